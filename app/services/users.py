"""Users: accounts, roles and the rules about who may change what."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.cache import Cache
from app.core.db import Database
from app.core.errors import AppError
from app.core.security import PasswordHashing
from app.models import Item, Role, User
from app.schemas import UserUpdate
from app.services.item_cache import GONE, invalidate_lists, item_key


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: what every authenticated request needs, cacheable."""

    id: uuid.UUID
    role: Role
    is_active: bool
    token_version: int

    @property
    def is_admin(self) -> bool:
        return self.role is Role.admin

    @classmethod
    def of(cls, user: User) -> Principal:
        return cls(user.id, Role(user.role), user.is_active, user.token_version)


def principal_key(user_id: uuid.UUID) -> str:
    return f"principal:{user_id}"


async def load_principal(*, db: Database, cache: Cache, user_id: uuid.UUID) -> Principal | None:
    async def load() -> bytes:
        async with db.connection() as conn:
            row = (await conn.execute(_PRINCIPAL.where(User.id == user_id))).one_or_none()
        if row is None:
            return _DELETED
        principal = Principal(row.id, Role(row.role), row.is_active, row.token_version)
        return _principal_document(principal)

    # A load only fills an empty slot: if a write stored the account meanwhile, a read
    # that may have seen the row before that write does not replace it.
    cached = json.loads(await cache.get_or_load(principal_key(user_id), load))
    if cached.get("deleted"):
        return None
    return Principal(uuid.UUID(cached["id"]), Role(cached["role"]), cached["active"], cached["ver"])


_PRINCIPAL = select(User.id, User.role, User.is_active, User.token_version)
# What the cache holds for an account that does not exist (deleted, or never was).
_DELETED = b'{"deleted": true}'


def _principal_document(principal: Principal) -> bytes:
    document = {
        "id": str(principal.id),
        "role": principal.role.value,
        "active": principal.is_active,
        "ver": principal.token_version,
    }
    return json.dumps(document).encode()


async def _store_principal(cache: Cache, user: User) -> None:
    """After a write to ``user``, put the new state in the cache (rather than just
    dropping the old one), so that a concurrent read of the old row cannot bring back a
    revoked token version."""
    await cache.set(principal_key(user.id), _principal_document(Principal.of(user)))


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def get_by_email(*, session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == normalize_email(email)))


async def get(*, session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise AppError(404, "User not found")
    return user


async def create(
    *,
    session: AsyncSession,
    hashing: PasswordHashing,
    email: str,
    password: str,
    full_name: str | None = None,
    role: Role = Role.user,
) -> User:
    email = normalize_email(email)
    if await get_by_email(session=session, email=email) is not None:
        raise _duplicate_email()
    user = User(
        email=email,
        full_name=full_name,
        hashed_password=await hashing.hash(password),
        role=role.value,
    )
    session.add(user)
    try:
        await session.commit()
    except IntegrityError:  # lost a race with a concurrent signup
        await session.rollback()
        raise _duplicate_email() from None
    return user


def _duplicate_email() -> AppError:
    return AppError(409, "A user with this email already exists", code="email_taken")


async def list_users(
    *, session: AsyncSession, limit: int, offset: int
) -> tuple[Sequence[User], int]:
    total = await session.scalar(select(func.count()).select_from(User)) or 0
    rows = await session.scalars(
        select(User).order_by(User.created_at, User.id).limit(limit).offset(offset)
    )
    return rows.all(), total


async def _active_admins(session: AsyncSession) -> int:
    return (
        await session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == Role.admin.value, User.is_active.is_(True))
        )
        or 0
    )


async def update(
    *,
    session: AsyncSession,
    cache: Cache,
    hashing: PasswordHashing,
    user: User,
    changes: UserUpdate,
    acting: Principal,
) -> User:
    """Apply an admin's or the user's own changes. The last active admin can be neither
    demoted nor disabled, so that the service never locks its operators out."""
    data = changes.model_dump(exclude_unset=True)
    revoke = False
    if data.get("email") is not None:
        email = normalize_email(data["email"])
        if email != user.email:
            other = await get_by_email(session=session, email=email)
            if other is not None:
                raise _duplicate_email()
            user.email = email
    if "full_name" in data:
        user.full_name = data["full_name"]
    losing_admin = user.role == Role.admin.value and (
        (data.get("role") not in (None, Role.admin)) or data.get("is_active") is False
    )
    if losing_admin and user.is_active and await _active_admins(session) <= 1:
        raise AppError(
            409, "This is the last active admin; promote another user first", code="last_admin"
        )
    if data.get("role") is not None and data["role"] != user.role:
        user.role = Role(data["role"]).value
        revoke = True
    if data.get("is_active") is not None and data["is_active"] != user.is_active:
        if user.id == acting.id and not data["is_active"]:
            raise AppError(409, "You cannot disable your own account", code="self_disable")
        user.is_active = data["is_active"]
        revoke = True
    if data.get("password") is not None:
        user.hashed_password = await hashing.hash(data["password"])
        revoke = True
    if revoke:
        user.token_version += 1
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise _duplicate_email() from None
    await _store_principal(cache, user)
    return user


async def change_password(
    *,
    session: AsyncSession,
    cache: Cache,
    hashing: PasswordHashing,
    user: User,
    current_password: str,
    new_password: str,
) -> None:
    if not await hashing.verify(user.hashed_password, current_password):
        raise AppError(400, "The current password is wrong", code="wrong_password")
    user.hashed_password = await hashing.hash(new_password)
    user.token_version += 1  # every token issued before this moment stops working
    await session.commit()
    await _store_principal(cache, user)


async def delete(*, session: AsyncSession, cache: Cache, user: User, acting: Principal) -> None:
    if user.id == acting.id:
        raise AppError(409, "You cannot delete your own account", code="self_delete")
    if user.role == Role.admin.value and user.is_active and await _active_admins(session) <= 1:
        raise AppError(409, "This is the last active admin", code="last_admin")
    # The database deletes the account's items with it (ON DELETE CASCADE); their
    # cached entries must answer 404 from now on too, not until they expire.
    item_ids = (await session.scalars(select(Item.id).where(Item.owner_id == user.id))).all()
    await session.delete(user)
    await session.commit()
    await cache.set(principal_key(user.id), _DELETED)
    for item_id in item_ids:
        await cache.set(item_key(item_id), GONE)
    await invalidate_lists(cache, user.id)
