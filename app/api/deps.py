"""What routes depend on, as ``Annotated`` aliases so that signatures read plainly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.cache import Cache
from app.core.config import Settings
from app.core.db import Database
from app.core.errors import AppError
from app.core.security import PasswordHashing, TokenError, Tokens
from app.services.audit import AuditLog
from app.services.auth import LoginCounters
from app.services.users import Principal, load_principal


@dataclass
class Services:
    """Everything a process builds once at startup and shares between requests."""

    settings: Settings
    db: Database
    cache: Cache
    hashing: PasswordHashing
    tokens: Tokens
    audit: AuditLog
    login_counters: LoginCounters


async def get_services(request: Request) -> Services:
    # async: FastAPI runs a plain `def` dependency in a worker thread, on every request.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_session(services: ServicesDep) -> AsyncIterator[AsyncSession]:
    async with services.db.session() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def _unauthorized(message: str) -> AppError:
    return AppError(401, message, code="unauthorized", headers={"WWW-Authenticate": "Bearer"})


class BearerPrincipal(OAuth2PasswordBearer):
    """Who sends 'Authorization: Bearer <token>': the OAuth2 scheme that /docs shows,
    the token check and the account lookup, as one dependency. (Every dependency costs
    FastAPI work on every request; authentication runs on almost all of them.)"""

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        token = await super().__call__(request)
        if not token:
            raise _unauthorized("Not authenticated: send 'Authorization: Bearer <token>'")
        services: Services = request.app.state.services
        try:
            claims = services.tokens.decode(token)
        except TokenError:
            raise _unauthorized("Invalid or expired token") from None
        # A session of its own, opened only when the cache misses: most requests by a
        # known user need no database round trip to authenticate.
        principal = await load_principal(
            db=services.db,
            cache=services.cache,
            user_id=claims.user_id,
            ttl=services.settings.principal_cache_ttl_seconds,
        )
        # A password change, role change or disable bumps the version: older tokens die.
        if (
            principal is None
            or not principal.is_active
            or principal.token_version != claims.token_version
        ):
            raise _unauthorized("Invalid or expired token")
        return principal


current_principal = BearerPrincipal(tokenUrl="/api/v1/auth/token", auto_error=False)

CurrentUser = Annotated[Principal, Depends(current_principal)]


async def require_admin(principal: CurrentUser) -> Principal:
    if not principal.is_admin:
        raise AppError(403, "Admin role required", code="forbidden")
    return principal


AdminUser = Annotated[Principal, Depends(require_admin)]
