"""Password login with lockout after repeated failures.

Failures are counted per email address in ``login_throttle``, for addresses with and
without an account alike: after ``login_max_failures`` failures within
``login_failure_window_seconds`` the address is locked for ``login_lockout_seconds``
(429 with Retry-After), and a locked address is refused before any password check.
Attempts for one address are checked one at a time, under a row lock, so that
concurrent guesses cannot slip past the limit.
Unknown addresses cost a full argon2 verification, so that neither the answer nor its
timing tells whether an account exists.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import metrics
from app.core.config import Settings
from app.core.errors import AppError
from app.core.security import PasswordHashing
from app.models import LoginThrottle, User, utcnow
from app.services import users

INVALID_CREDENTIALS = "Incorrect email or password"


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every timestamp this service stores is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def authenticate(
    *,
    session: AsyncSession,
    hashing: PasswordHashing,
    settings: Settings,
    email: str,
    password: str,
) -> User:
    key = users.normalize_email(email)[:320]
    throttle = None if "\x00" in key else await _lock_throttle(session=session, key=key)

    user = await users.get_by_email(session=session, email=key) if "\x00" not in key else None
    valid = await hashing.verify(user.hashed_password if user else None, password)
    if not valid or user is None:
        metrics.LOGIN_FAILURES.labels("credentials").inc()
        if throttle is not None:
            _count_failure(throttle, settings)
            await session.commit()
        raise AppError(
            401,
            INVALID_CREDENTIALS,
            code="invalid_credentials",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not user.is_active:
        metrics.LOGIN_FAILURES.labels("disabled").inc()
        await session.commit()
        raise AppError(403, "This account is disabled", code="account_disabled")

    if throttle is not None:
        await session.delete(throttle)
    if hashing.needs_rehash(user.hashed_password):
        user.hashed_password = await hashing.hash(password)
    await session.commit()
    return user


async def _lock_throttle(*, session: AsyncSession, key: str) -> LoginThrottle:
    """The address's failure count, row-locked until this attempt commits; 429 while
    the address is locked.

    The lock is held across the password check, so that concurrent attempts for one
    address are checked one after another and each sees the failures before it:
    however many guesses arrive at once, at most ``login_max_failures`` of them reach
    a password check per window. (Reading the count first and writing it after the
    slow check let every concurrent guess through.) On SQLite, a single-process
    development database, the lock clause is ignored.
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
    return throttle


def _count_failure(throttle: LoginThrottle, settings: Settings) -> None:
    now = utcnow()
    window = timedelta(seconds=settings.login_failure_window_seconds)
    if _aware(throttle.window_started_at) + window < now:
        throttle.failures = 0
        throttle.window_started_at = now
        throttle.locked_until = None
    throttle.failures += 1
    if throttle.failures >= settings.login_max_failures:
        throttle.locked_until = now + timedelta(seconds=settings.login_lockout_seconds)
        throttle.failures = 0
        throttle.window_started_at = now
