from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm

from app.api.deps import ServicesDep
from app.core import errors
from app.schemas import Token
from app.services import auth

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/token",
    response_model=Token,
    responses=errors.responses(400, 401, 403, 422, 429),
    summary="Log in with email and password",
)
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    services: ServicesDep,
) -> Token:
    """OAuth2 password flow: `username` is the email. Returns a bearer token.

    After repeated failures for one email, further attempts get 429 with
    `Retry-After` until the lockout ends."""
    services.login_counters.start_if_due()
    user = await auth.authenticate(
        db=services.db,
        hashing=services.hashing,
        settings=services.settings,
        counters=services.login_counters,
        email=form.username,
        password=form.password,
    )
    token = services.tokens.issue(user_id=user.id, token_version=user.token_version, role=user.role)
    return Token(access_token=token, expires_in=int(services.tokens.lifetime.total_seconds()))
