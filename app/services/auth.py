"""Password login with lockout after repeated failures.

Failures are counted per email address in ``login_throttle``, for addresses with and
without an account alike: after ``login_max_failures`` failures within
``login_failure_window_seconds`` the address is locked for ``login_lockout_seconds``
(429 with Retry-After), and a locked address is refused before any password check.
Unknown addresses cost a full argon2 verification, so that neither the answer nor its
timing tells whether an account exists.

No database connection is held while a password is checked: argon2 takes tens of
milliseconds of CPU and waits for a hashing slot under load, and a connection held
across it would let a burst of logins take the whole pool from the rest of the API.
A login is three steps instead:

1. one statement counts the attempt as a failure *before* the check, under a row
   lock on the address's counter, and one reads the account. Concurrent guesses are
   counted one after another, so however many arrive at once, at most
   ``login_max_failures`` of them per window get past this step;
2. the password check, with no connection;
3. on success, the account is read again (it must still have the password that was
   checked, and be active) and the counter is forgotten: the attempt was no failure
   after all.

Each step's statements run on an autocommit connection: no BEGIN or COMMIT round
trips, and the connection goes back to the pool between the steps.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, case, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core import metrics
from app.core.config import Settings
from app.core.db import Database
from app.core.errors import AppError
from app.core.security import PasswordHashing
from app.models import LoginThrottle, User, utcnow
from app.services import users
from app.services.audit import guarded

log = logging.getLogger(__name__)

INVALID_CREDENTIALS = "Incorrect email or password"

# How often a process deletes the counters that have nothing left to count.
_SWEEP_INTERVAL_SECONDS = 60.0


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every timestamp this service stores is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _invalid() -> AppError:
    return AppError(
        401, INVALID_CREDENTIALS, code="invalid_credentials", headers={"WWW-Authenticate": "Bearer"}
    )


@dataclass(frozen=True)
class Account:
    """What a token is issued from: the account as it was when the login succeeded."""

    id: uuid.UUID
    role: str
    token_version: int


async def authenticate(
    *,
    db: Database,
    hashing: PasswordHashing,
    settings: Settings,
    counters: LoginCounters,
    email: str,
    password: str,
) -> Account:
    key = users.normalize_email(email)[:320]
    if "\x00" in key:  # no such address can exist, or be stored; it costs a check too
        await hashing.verify(None, password)
        metrics.LOGIN_FAILURES.labels("credentials").inc()
        raise _invalid()
    async with counters.one_at_a_time(key):
        return await _authenticate(
            db=db, hashing=hashing, settings=settings, key=key, password=password
        )


async def _authenticate(
    *, db: Database, hashing: PasswordHashing, settings: Settings, key: str, password: str
) -> Account:
    async with db.connection() as conn:
        await _count_attempt(conn, key=key, settings=settings)
        account = (
            await conn.execute(select(User.hashed_password, User.id).where(User.email == key))
        ).one_or_none()
    checked_hash = account.hashed_password if account is not None else None
    # No connection is held from here until the check is done.
    valid = await hashing.verify(checked_hash, password)
    if not valid or account is None or checked_hash is None:
        metrics.LOGIN_FAILURES.labels("credentials").inc()
        raise _invalid()
    new_hash = await hashing.hash(password) if hashing.needs_rehash(checked_hash) else None

    async with db.connection() as conn:
        user = (await conn.execute(_ACCOUNT.where(User.id == account.id))).one_or_none()
        # Deleted, or its password changed, while this one was being checked. (A change
        # after this read increments the token version: the token issued here dies.)
        if user is None or user.hashed_password != checked_hash:
            metrics.LOGIN_FAILURES.labels("credentials").inc()
            raise _invalid()
        # The right password: the attempt was no failure (for a disabled account too).
        await conn.execute(delete(LoginThrottle).where(LoginThrottle.email == key))
        if not user.is_active:
            metrics.LOGIN_FAILURES.labels("disabled").inc()
            raise AppError(403, "This account is disabled", code="account_disabled")
        if new_hash is not None:
            await conn.execute(
                update(User)
                .where(User.id == user.id, User.hashed_password == checked_hash)
                .values(hashed_password=new_hash)
            )
    return Account(user.id, user.role, user.token_version)


_ACCOUNT = select(User.id, User.role, User.is_active, User.token_version, User.hashed_password)


async def _count_attempt(conn: AsyncConnection, *, key: str, settings: Settings) -> None:
    """Count this attempt as a failure (a success takes it back); 429 while the
    address is locked.

    One statement, an upsert that locks the counter's row while it reads and changes
    it: concurrent attempts for one address are counted one after another and each
    sees those before it. The attempt that reaches ``login_max_failures`` locks the
    address and is still checked; a locked address's row is left as it is, and the
    upsert returns nothing.
    """
    now = utcnow()
    lock_until = now + timedelta(seconds=settings.login_lockout_seconds)
    limit = settings.login_max_failures
    table = LoginThrottle.__table__
    insert = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert
    stmt = insert(LoginThrottle).values(
        email=key,
        failures=0 if limit <= 1 else 1,
        window_started_at=now,
        locked_until=lock_until if limit <= 1 else None,
    )
    expired = table.c.window_started_at < now - timedelta(
        seconds=settings.login_failure_window_seconds
    )
    failures = case((expired, 1), else_=table.c.failures + 1)
    reached = failures >= limit
    locked = and_(table.c.locked_until.is_not(None), table.c.locked_until > now)
    upsert = stmt.on_conflict_do_update(
        index_elements=[table.c.email],
        set_={
            "failures": case((reached, 0), else_=failures),
            "window_started_at": case(
                (or_(reached, expired), now), else_=table.c.window_started_at
            ),
            "locked_until": case((reached, lock_until), else_=None),
        },
        where=~locked,
    ).returning(table.c.email)
    if (await conn.execute(upsert)).first() is not None:
        return
    locked_until = await conn.scalar(
        select(LoginThrottle.locked_until).where(LoginThrottle.email == key)
    )
    metrics.LOGIN_FAILURES.labels("locked").inc()
    retry = max(1, math.ceil((_aware(locked_until or now) - now).total_seconds()))
    raise AppError(
        429,
        f"Too many failed logins for this email; try again in {retry} seconds",
        code="login_locked",
        headers={"Retry-After": str(retry)},
    )


class LoginCounters:
    """What a process keeps about logins besides the database's counters.

    - Attempts for one address in this process run one after another
      (``one_at_a_time``; waiting holds no connection). Each attempt is counted as a
      failure before its check and taken back if it succeeds, so without this more
      than ``login_max_failures`` simultaneous logins for one account, all with the
      right password, would lock it until the first of them succeeded.
    - At most once a minute, the counters of addresses that are neither locked nor
      inside a failure window are deleted: they count nothing any more, and without
      this every unknown address ever tried would keep a row.
    """

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._window = timedelta(seconds=settings.login_failure_window_seconds)
        self._next = 0.0
        self._task: asyncio.Task[None] | None = None
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def one_at_a_time(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def start_if_due(self) -> None:
        """Start a sweep in the background if the last one is a minute old."""
        now = time.monotonic()
        if now < self._next or (self._task is not None and not self._task.done()):
            return
        self._next = now + _SWEEP_INTERVAL_SECONDS
        self._task = asyncio.ensure_future(guarded("login_throttle_sweep", self.sweep)())

    async def sweep(self) -> None:
        now = utcnow()
        stale = and_(
            LoginThrottle.window_started_at < now - self._window,
            or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until < now),
        )
        async with self._db.connection() as conn:
            result = await conn.execute(delete(LoginThrottle).where(stale))
        if result.rowcount:
            log.info("login counters swept", extra={"deleted": result.rowcount})

    async def close(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
