"""Users: accounts, roles and the rules about who may change what."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.cache import PLACEHOLDER, TOMBSTONE, Cache
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


async def load_principal(
    *, db: Database, cache: Cache, user_id: uuid.UUID, ttl: float
) -> Principal | None:
    """Who ``user_id`` is now, cached for at most ``ttl`` seconds.

    Cached states are ordered by the account's token version, which every change to
    what a principal holds (role, active, password, email) increments under the row's
    lock: a read that fetched the row before a change cannot store the older state
    over the newer one, whichever reaches the cache last."""

    async def load() -> tuple[int, bytes]:
        async with db.connection() as conn:
            row = (await conn.execute(_PRINCIPAL.where(User.id == user_id))).one_or_none()
        if row is None:
            return TOMBSTONE, _DELETED
        principal = Principal(row.id, Role(row.role), row.is_active, row.token_version)
        return principal.token_version, _principal_document(principal)

    cached = json.loads(await cache.get_or_load(principal_key(user_id), load, ttl=ttl))
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


async def _revoke_cached(cache: Cache, user: User) -> None:
    """Before committing a new token version: mark the account's entry as needing at
    least that version, so that no older state can be stored or served from then on.
    It fails the request (503) if the cache cannot take it; the change is then not
    committed, and no replica keeps serving the old principal from a cache that missed
    the write."""
    await cache.put(principal_key(user.id), PLACEHOLDER, version=user.token_version, strict=True)


async def _store_principal(cache: Cache, user: User, ttl: float) -> None:
    """After the commit, the new state itself (if this fails, the entry stays marked
    and requests read the account from the database)."""
    document = _principal_document(Principal.of(user))
    await cache.put(principal_key(user.id), document, version=user.token_version, ttl=ttl)


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def get_by_email(*, session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == normalize_email(email)))


async def get(*, session: AsyncSession, user_id: uuid.UUID, for_update: bool = False) -> User:
    user = await session.get(
        User, user_id, with_for_update=for_update, populate_existing=for_update
    )
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
    """Create an account. The password is hashed before the database is touched: no
    connection waits on argon2. (A taken email thereby costs a hash too, so the time
    of the answer does not tell that the email was taken before the check ran.)"""
    hashed_password = await hashing.hash(password)
    email = normalize_email(email)
    if await get_by_email(session=session, email=email) is not None:
        await session.rollback()
        raise _duplicate_email()
    user = User(email=email, full_name=full_name, hashed_password=hashed_password, role=role.value)
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


async def _lock_admins(session: AsyncSession) -> set[uuid.UUID]:
    """The active admins' ids, their rows locked until the transaction ends.

    Every change that can take away an admin (a demotion, a disable, a delete) takes
    these locks first, in id order, before it locks or changes its target: two such
    changes run one after the other and the second counts what the first committed,
    so two admins demoting each other at once cannot leave none. (Postgres re-reads a
    row it waited for: an admin demoted meanwhile is no longer counted.) SQLite, a
    single-process development database, ignores the lock clause and serializes
    writes on its own.
    """
    rows = await session.scalars(
        select(User.id)
        .where(User.role == Role.admin.value, User.is_active.is_(True))
        .order_by(User.id)
        .with_for_update()
    )
    return set(rows.all())


def _last_admin() -> AppError:
    return AppError(
        409, "This is the last active admin; promote another user first", code="last_admin"
    )


def _no_longer_admin() -> AppError:
    return AppError(403, "Admin role required", code="forbidden")


async def password_hash(*, session: AsyncSession, user_id: uuid.UUID) -> str:
    """The account's password hash, read in a transaction that is over when this
    returns: the caller may then spend as long as it likes on argon2 without holding
    a connection."""
    hashed = await session.scalar(select(User.hashed_password).where(User.id == user_id))
    await session.commit()
    if hashed is None:
        raise AppError(404, "User not found")
    return hashed


async def update(
    *,
    session: AsyncSession,
    cache: Cache,
    user_id: uuid.UUID,
    changes: UserUpdate,
    new_password_hash: str | None,
    acting: Principal,
    principal_ttl: float,
    expected_password_hash: str | None = None,
) -> User:
    """Apply an admin's or the user's own changes. The last active admin can be neither
    demoted nor disabled, so that the service never locks its operators out.

    The password, when there is a new one, comes hashed (``new_password_hash``): the
    row stays locked only for this short transaction, never across argon2. With
    ``expected_password_hash`` (a change the user confirmed with their password) the
    change is refused if the password changed since it was checked."""
    data = changes.model_dump(exclude_unset=True)
    may_lose_admin = data.get("role") not in (None, Role.admin) or data.get("is_active") is False
    admins = await _lock_admins(session) if may_lose_admin else set()
    user = await get(session=session, user_id=user_id, for_update=True)
    if expected_password_hash is not None and user.hashed_password != expected_password_hash:
        await session.rollback()
        raise AppError(409, "The password changed meanwhile; try again", code="conflict")
    revoke = False
    if data.get("email") is not None:
        email = normalize_email(data["email"])
        if email != user.email:
            other = await get_by_email(session=session, email=email)
            if other is not None:
                await session.rollback()
                raise _duplicate_email()
            user.email = email
            revoke = True  # tokens name the account that was logged into, as it was
    if "full_name" in data:
        user.full_name = data["full_name"]
    if may_lose_admin and user.role == Role.admin.value and user.is_active:
        if acting.is_admin and acting.id not in admins:
            await session.rollback()
            raise _no_longer_admin()
        if len(admins) <= 1:
            await session.rollback()
            raise _last_admin()
    if data.get("role") is not None and data["role"] != user.role:
        user.role = Role(data["role"]).value
        revoke = True
    if data.get("is_active") is not None and data["is_active"] != user.is_active:
        if user.id == acting.id and not data["is_active"]:
            await session.rollback()
            raise AppError(409, "You cannot disable your own account", code="self_disable")
        user.is_active = data["is_active"]
        revoke = True
    if new_password_hash is not None:
        user.hashed_password = new_password_hash
        revoke = True
    if revoke:
        user.token_version += 1
        await _revoke_cached(cache, user)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise _duplicate_email() from None
    if revoke:
        await _store_principal(cache, user, principal_ttl)
    return user


async def change_password(
    *,
    session: AsyncSession,
    cache: Cache,
    hashing: PasswordHashing,
    user_id: uuid.UUID,
    current_password: str,
    new_password: str,
    principal_ttl: float,
) -> None:
    """Check the current password, then store the new one: argon2 runs twice, with
    no connection held; the row is locked only for the final short write."""
    current_hash = await password_hash(session=session, user_id=user_id)
    if not await hashing.verify(current_hash, current_password):
        raise AppError(400, "The current password is wrong", code="wrong_password")
    new_hash = await hashing.hash(new_password)
    user = await get(session=session, user_id=user_id, for_update=True)
    if user.hashed_password != current_hash:
        await session.rollback()
        raise AppError(409, "The password changed meanwhile; try again", code="conflict")
    user.hashed_password = new_hash
    user.token_version += 1  # every token issued before this moment stops working
    await _revoke_cached(cache, user)
    await session.commit()
    await _store_principal(cache, user, principal_ttl)


async def delete(
    *, session: AsyncSession, cache: Cache, user_id: uuid.UUID, acting: Principal
) -> None:
    admins = await _lock_admins(session)
    user = await get(session=session, user_id=user_id, for_update=True)
    if user.id == acting.id:
        await session.rollback()
        raise AppError(409, "You cannot delete your own account", code="self_delete")
    if acting.is_admin and acting.id not in admins:
        await session.rollback()
        raise _no_longer_admin()
    if user.role == Role.admin.value and user.is_active and len(admins) <= 1:
        await session.rollback()
        raise AppError(409, "This is the last active admin", code="last_admin")
    # The database deletes the account's items with it (ON DELETE CASCADE); their
    # cached entries must answer 404 from now on too, not until they expire.
    item_ids = (await session.scalars(select(Item.id).where(Item.owner_id == user.id))).all()
    # Before the commit, and the request fails if it cannot be stored: a cache that
    # missed this write would keep the deleted account's tokens working.
    await cache.put(principal_key(user.id), _DELETED, version=TOMBSTONE, strict=True)
    await session.delete(user)
    await session.commit()
    for item_id in item_ids:
        await cache.put(item_key(item_id), GONE, version=TOMBSTONE)
    await invalidate_lists(cache, user.id)
