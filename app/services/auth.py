"""Password login with lockout after repeated failures.

Failures are counted per email address in ``login_throttle``, for addresses with and
without an account alike: after ``login_max_failures`` failures within
``login_failure_window_seconds`` the address is locked for ``login_lockout_seconds``
(429 with Retry-After), and a locked address is refused before any password check.
Unknown addresses cost a full argon2 verification, so that neither the answer nor its
timing tells whether an account exists.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError
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
    now = utcnow()
    throttle = await session.get(LoginThrottle, key)
    if throttle is not None and throttle.locked_until is not None:
        locked_until = _aware(throttle.locked_until)
        if locked_until > now:
            metrics.LOGIN_FAILURES.labels("locked").inc()
            retry = max(1, math.ceil((locked_until - now).total_seconds()))
            raise AppError(
                429,
                f"Too many failed logins for this email; try again in {retry} seconds",
                code="login_locked",
                headers={"Retry-After": str(retry)},
            )

    user = await users.get_by_email(session=session, email=key) if "\x00" not in key else None
    valid = await hashing.verify(user.hashed_password if user else None, password)
    if not valid or user is None:
        metrics.LOGIN_FAILURES.labels("credentials").inc()
        await _record_failure(session=session, settings=settings, key=key, throttle=throttle)
        raise AppError(
            401,
            INVALID_CREDENTIALS,
            code="invalid_credentials",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not user.is_active:
        metrics.LOGIN_FAILURES.labels("disabled").inc()
        raise AppError(403, "This account is disabled", code="account_disabled")

    if throttle is not None:
        await session.delete(throttle)
    if hashing.needs_rehash(user.hashed_password):
        user.hashed_password = await hashing.hash(password)
    await session.commit()
    return user


async def _record_failure(
    *, session: AsyncSession, settings: Settings, key: str, throttle: LoginThrottle | None
) -> None:
    if "\x00" in key:
        return
    now = utcnow()
    window = timedelta(seconds=settings.login_failure_window_seconds)
    if throttle is None:
        throttle = LoginThrottle(email=key, failures=0, window_started_at=now)
        session.add(throttle)
    elif _aware(throttle.window_started_at) + window < now:
        throttle.failures = 0
        throttle.window_started_at = now
        throttle.locked_until = None
    throttle.failures += 1
    if throttle.failures >= settings.login_max_failures:
        throttle.locked_until = now + timedelta(seconds=settings.login_lockout_seconds)
        throttle.failures = 0
        throttle.window_started_at = now
    try:
        await session.commit()
    except IntegrityError:
        # A concurrent failure for the same address created the row first; its count
        # stands, and this attempt was refused anyway.
        await session.rollback()
