from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.api.deps import AdminUser, CurrentUser, ServicesDep, SessionDep
from app.core import errors
from app.core.errors import AppError
from app.schemas import (
    Page,
    PasswordChange,
    UserCreate,
    UserPublic,
    UserUpdate,
    UserUpdateMe,
)
from app.services import users

router = APIRouter(prefix="/users", tags=["users"])


@router.post(
    "/signup",
    response_model=UserPublic,
    status_code=201,
    responses=errors.responses(400, 403, 409, 422),
)
async def signup(body: UserCreate, services: ServicesDep, session: SessionDep) -> UserPublic:
    """Create an account with the `user` role."""
    if not services.settings.signup_enabled:
        raise AppError(403, "Signup is disabled on this service", code="signup_disabled")
    user = await users.create(
        session=session,
        hashing=services.hashing,
        email=str(body.email),
        password=body.password,
        full_name=body.full_name,
    )
    return UserPublic.model_validate(user)


@router.get("/me", response_model=UserPublic, responses=errors.responses(401))
async def read_me(principal: CurrentUser, session: SessionDep) -> UserPublic:
    return UserPublic.model_validate(await users.get(session=session, user_id=principal.id))


@router.patch("/me", response_model=UserPublic, responses=errors.responses(400, 401, 409, 422))
async def update_me(
    body: UserUpdateMe, principal: CurrentUser, services: ServicesDep, session: SessionDep
) -> UserPublic:
    """Change your name or email. A new email needs `current_password`, and ends every
    token issued before it: log in again with the new email."""
    changes = body.model_dump(exclude_unset=True)
    current_password = changes.pop("current_password", None)
    expected_hash = None
    if changes.get("email") is not None:
        if current_password is None:
            raise AppError(
                400,
                "Changing your email needs your password: send current_password too",
                code="password_required",
            )
        expected_hash = await users.password_hash(session=session, user_id=principal.id)
        if not await services.hashing.verify(expected_hash, current_password):
            raise AppError(400, "The current password is wrong", code="wrong_password")
    user = await users.update(
        session=session,
        cache=services.cache,
        user_id=principal.id,
        changes=UserUpdate(**changes),
        new_password_hash=None,
        acting=principal,
        principal_ttl=services.settings.principal_cache_ttl_seconds,
        expected_password_hash=expected_hash,
    )
    return UserPublic.model_validate(user)


@router.post("/me/password", status_code=204, responses=errors.responses(400, 401, 422))
async def change_password(
    body: PasswordChange, principal: CurrentUser, services: ServicesDep, session: SessionDep
) -> Response:
    """Change your password. Every token issued before the change stops working."""
    await users.change_password(
        session=session,
        cache=services.cache,
        hashing=services.hashing,
        user_id=principal.id,
        current_password=body.current_password,
        new_password=body.new_password,
        principal_ttl=services.settings.principal_cache_ttl_seconds,
    )
    return Response(status_code=204)


@router.get("", response_model=Page[UserPublic], responses=errors.responses(401, 403, 422))
async def list_users(
    admin: AdminUser,
    services: ServicesDep,
    session: SessionDep,
    limit: Annotated[
        int | None,
        Query(ge=1, le=100, description="Page size (default: 50, FASTSHIP_DEFAULT_PAGE_SIZE)."),
    ] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Page[UserPublic]:
    limit = limit or services.settings.default_page_size
    rows, total = await users.list_users(session=session, limit=limit, offset=offset)
    return Page[UserPublic](
        items=[UserPublic.model_validate(u) for u in rows], total=total, limit=limit, offset=offset
    )


@router.get("/{user_id}", response_model=UserPublic, responses=errors.responses(401, 403, 404, 422))
async def read_user(user_id: uuid.UUID, admin: AdminUser, session: SessionDep) -> UserPublic:
    return UserPublic.model_validate(await users.get(session=session, user_id=user_id))


@router.patch(
    "/{user_id}",
    response_model=UserPublic,
    responses=errors.responses(400, 401, 403, 404, 409, 422),
)
async def update_user(
    user_id: uuid.UUID,
    body: UserUpdate,
    admin: AdminUser,
    services: ServicesDep,
    session: SessionDep,
) -> UserPublic:
    """Change a user's email, name, role or password, or disable them with
    `is_active: false`. Role changes, disabling and new passwords end the user's
    current sessions; so does a new email."""
    # Hashed before the database is touched: no connection waits on argon2.
    new_hash = await services.hashing.hash(body.password) if body.password is not None else None
    user = await users.update(
        session=session,
        cache=services.cache,
        user_id=user_id,
        changes=body,
        new_password_hash=new_hash,
        acting=admin,
        principal_ttl=services.settings.principal_cache_ttl_seconds,
    )
    return UserPublic.model_validate(user)


@router.delete("/{user_id}", status_code=204, responses=errors.responses(401, 403, 404, 409, 422))
async def delete_user(
    user_id: uuid.UUID, admin: AdminUser, services: ServicesDep, session: SessionDep
) -> Response:
    """Delete a user and all their items."""
    await users.delete(session=session, cache=services.cache, user_id=user_id, acting=admin)
    return Response(status_code=204)
