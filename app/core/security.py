"""Password hashing (argon2id) and access tokens (JWT)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from app.core.config import Settings


def _lower_priority(niceness: int) -> None:
    """Run in each hashing thread when it starts: on Linux a thread's niceness is its
    own, so this leaves the event loop's thread (and every other) as it was. The CPU
    scheduler gives a thread at 10 about a tenth of the time of a thread at 0 on a
    shared core."""
    # Not Linux, or not allowed: the hashes run at normal priority.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)


class PasswordHashing:
    """argon2id hashing, bounded in concurrency and run in threads of their own at a
    lower CPU priority, so that a burst of logins cannot take the cores away from the
    rest of the API: when requests and hashes compete for a core, the requests' event
    loop gets most of it."""

    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.password_hash_time_cost,
            memory_cost=settings.password_hash_memory_kib,
            parallelism=settings.password_hash_parallelism,
            type=Type.ID,
        )
        self._slots = asyncio.Semaphore(settings.password_hash_concurrency)
        self._threads = ThreadPoolExecutor(
            max_workers=settings.password_hash_concurrency,
            thread_name_prefix="argon2",
            initializer=_lower_priority,
            initargs=(settings.password_hash_niceness,),
        )
        # Verified against when the account does not exist, so that a login for an
        # unknown email costs the same as one with a wrong password.
        self._dummy_hash = self._hasher.hash(uuid.uuid4().hex)

    def hash_sync(self, password: str) -> str:
        return self._hasher.hash(password)

    async def hash(self, password: str) -> str:
        async with self._slots:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._threads, self._hasher.hash, password)

    async def verify(self, hashed: str | None, password: str) -> bool:
        """True when ``password`` matches ``hashed``; ``None`` costs a full check too."""
        async with self._slots:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._threads, self._verify, hashed, password)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)

    def _verify(self, hashed: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(hashed or self._dummy_hash, password) and hashed is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, hashed: str) -> bool:
        return self._hasher.check_needs_rehash(hashed)


_LEEWAY = timedelta(seconds=5)
_VERIFIED_MAX = 10_000


class TokenError(Exception):
    """The token is not one this service issued, or no longer valid."""


@dataclass(frozen=True)
class TokenClaims:
    user_id: uuid.UUID
    token_version: int
    expires_at: datetime


class Tokens:
    def __init__(self, settings: Settings) -> None:
        self._key = settings.jwt_secret_key.get_secret_value()
        self._algorithm = settings.jwt_algorithm
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self.lifetime = timedelta(minutes=settings.access_token_expire_minutes)
        self._verified: dict[str, TokenClaims] = {}

    def issue(self, *, user_id: uuid.UUID, token_version: int, role: str) -> str:
        now = datetime.now(UTC)
        claims: dict[str, Any] = {
            "sub": str(user_id),
            "ver": token_version,
            "role": role,
            "iss": self._issuer,
            "aud": self._audience,
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm=self._algorithm)

    def decode(self, token: str) -> TokenClaims:
        """Verify ``token``. A token verified before is looked up instead of verified
        again (its signature cannot have changed); its expiry is checked every time."""
        claims = self._verified.get(token)
        if claims is not None:
            if claims.expires_at + _LEEWAY <= datetime.now(UTC):
                del self._verified[token]
                raise TokenError("Signature has expired")
            return claims
        claims = self._verify(token)
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.pop(next(iter(self._verified)))
        self._verified[token] = claims
        return claims

    def _verify(self, token: str) -> TokenClaims:
        try:
            # Exactly one algorithm is accepted: "none" and any asymmetric algorithm
            # (key confusion) fail here.
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "nbf", "sub", "iss", "aud", "ver"]},
                leeway=_LEEWAY,
            )
            return TokenClaims(
                user_id=uuid.UUID(str(claims["sub"])),
                token_version=int(claims["ver"]),
                expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise TokenError(str(exc)) from exc
