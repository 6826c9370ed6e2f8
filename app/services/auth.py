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

1. one short transaction counts the attempt as a failure *before* the check, under a
   row lock on the address's counter, and reads the account. Concurrent guesses are
   counted one after another, so however many arrive at once, at most
   ``login_max_failures`` of them per window get past this step;
2. the password check, with no connection;
3. on success, one short transaction forgets the counter (the attempt was no
   failure after all) and checks that the account still has the password that was
   checked and is still active.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

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


async def authenticate(
    *,
    session: AsyncSession,
    hashing: PasswordHashing,
    settings: Settings,
    email: str,
    password: str,
) -> User:
    key = users.normalize_email(email)[:320]
    if "\x00" in key:  # no such address can exist, or be stored; it costs a check too
        await hashing.verify(None, password)
        metrics.LOGIN_FAILURES.labels("credentials").inc()
        raise _invalid()

    account = await _count_attempt(session=session, key=key, settings=settings)
    checked_hash = account[0] if account else None
    # No connection is held from here until the check is done.
    valid = await hashing.verify(checked_hash, password)
    if not valid or account is None:
        metrics.LOGIN_FAILURES.labels("credentials").inc()
        raise _invalid()
    new_hash = await hashing.hash(password) if hashing.needs_rehash(account[0]) else None

    user = await session.get(User, account[1], with_for_update=True, populate_existing=True)
    if user is None or user.hashed_password != checked_hash:
        # Deleted, or its password changed while this one was being checked.
        await session.commit()
        metrics.LOGIN_FAILURES.labels("credentials").inc()
        raise _invalid()
    if not user.is_active:
        await session.commit()
        metrics.LOGIN_FAILURES.labels("disabled").inc()
        raise AppError(403, "This account is disabled", code="account_disabled")
    await session.execute(delete(LoginThrottle).where(LoginThrottle.email == key))
    if new_hash is not None:
        user.hashed_password = new_hash
    await session.commit()
    return user


async def _count_attempt(
    *, session: AsyncSession, key: str, settings: Settings
) -> tuple[str, object] | None:
    """Count this attempt as a failure (a success takes it back) and return the
    account's password hash and id, or None when no account has the address; 429
    while the address is locked. One transaction, committed before returning.

    The counter row is locked for the length of this short transaction only, so that
    concurrent attempts for one address are counted one after another and each sees
    those before it. On SQLite, a single-process development database, the lock
    clause is ignored: its first write takes the database's write lock instead.
    """
    now = utcnow()
    insert = sqlite_insert if session.get_bind().dialect.name == "sqlite" else pg_insert
    await session.execute(
        insert(LoginThrottle)
        .values(email=key, failures=0, window_started_at=now)
        .on_conflict_do_nothing(index_elements=["email"])
    )
    throttle = await session.get(LoginThrottle, key, with_for_update=True, populate_existing=True)
    assert throttle is not None  # inserted above if it was missing
    if throttle.locked_until is not None and _aware(throttle.locked_until) > now:
        await session.commit()
        metrics.LOGIN_FAILURES.labels("locked").inc()
        retry = max(1, math.ceil((_aware(throttle.locked_until) - now).total_seconds()))
        raise AppError(
            429,
            f"Too many failed logins for this email; try again in {retry} seconds",
            code="login_locked",
            headers={"Retry-After": str(retry)},
        )
    window = timedelta(seconds=settings.login_failure_window_seconds)
    if _aware(throttle.window_started_at) + window < now:
        throttle.failures = 0
        throttle.window_started_at = now
        throttle.locked_until = None
    throttle.failures += 1
    if throttle.failures >= settings.login_max_failures:
        # This attempt is the last one of the window to be checked: the address is
        # locked unless it succeeds (a success deletes the counter).
        throttle.locked_until = now + timedelta(seconds=settings.login_lockout_seconds)
        throttle.failures = 0
        throttle.window_started_at = now
    account = (
        await session.execute(select(User.hashed_password, User.id).where(User.email == key))
    ).one_or_none()
    await session.commit()
    return (account[0], account[1]) if account is not None else None


class ThrottleSweeper:
    """Deletes, at most once a minute per process, the counters of addresses that are
    neither locked nor inside a failure window: they count nothing any more, and
    without this every unknown address ever tried would keep a row."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._window = timedelta(seconds=settings.login_failure_window_seconds)
        self._next = 0.0
        self._task: asyncio.Task[None] | None = None

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
