"""Items: owner-scoped CRUD. A user sees only their own items; an admin sees all.

Someone else's item answers 404, exactly like a missing one, so that guessing ids
reveals nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.cache import Cache
from app.core.errors import AppError
from app.models import Item
from app.schemas import ItemCreate, ItemPublic, ItemSort, ItemUpdate
from app.services.users import Principal

_SORT_COLUMNS: dict[str, Any] = {
    "created_at": Item.created_at,
    "updated_at": Item.updated_at,
    "name": Item.name,
    "price": Item.price,
}


def item_key(item_id: uuid.UUID) -> str:
    return f"item:{item_id}"


def _not_found() -> AppError:
    return AppError(404, "Item not found")


def _visible(item_owner: uuid.UUID, principal: Principal) -> bool:
    return principal.is_admin or item_owner == principal.id


async def create(*, session: AsyncSession, principal: Principal, data: ItemCreate) -> Item:
    item = Item(owner_id=principal.id, **data.model_dump())
    session.add(item)
    await session.commit()
    return item


async def get_public(
    *, session: AsyncSession, cache: Cache, principal: Principal, item_id: uuid.UUID
) -> ItemPublic:
    """The read path behind GET /items/{id}, served from the cache when it can be."""
    cached = await cache.get(item_key(item_id))
    if cached is not None:
        public = ItemPublic.model_validate(cached)
    else:
        item = await session.get(Item, item_id)
        if item is None:
            raise _not_found()
        public = ItemPublic.model_validate(item)
        await cache.set(item_key(item_id), public.model_dump(mode="json"))
    if not _visible(public.owner_id, principal):
        raise _not_found()
    return public


async def get(*, session: AsyncSession, principal: Principal, item_id: uuid.UUID) -> Item:
    item = await session.get(Item, item_id)
    if item is None or not _visible(item.owner_id, principal):
        raise _not_found()
    return item


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filters(
    principal: Principal, q: str | None, owner_id: uuid.UUID | None
) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = []
    if not principal.is_admin:
        clauses.append(Item.owner_id == principal.id)
    elif owner_id is not None:
        clauses.append(Item.owner_id == owner_id)
    if q:
        pattern = f"%{_escape_like(q)}%"
        clauses.append(
            or_(Item.name.ilike(pattern, escape="\\"), Item.description.ilike(pattern, escape="\\"))
        )
    return clauses


async def list_items(
    *,
    session: AsyncSession,
    principal: Principal,
    limit: int,
    offset: int,
    q: str | None = None,
    owner_id: uuid.UUID | None = None,
    sort: ItemSort = ItemSort.created_at_desc,
) -> tuple[Sequence[Item], int]:
    if owner_id is not None and not principal.is_admin:
        raise AppError(403, "Only admins can filter by owner", code="forbidden")
    clauses = _filters(principal, q, owner_id)
    column = _SORT_COLUMNS[sort.value.lstrip("-")]
    descending = sort.value.startswith("-")
    order = (column.desc(), Item.id.desc()) if descending else (column.asc(), Item.id.asc())
    stmt: Select[Item] = select(Item).where(*clauses).order_by(*order)
    total = await session.scalar(select(func.count()).select_from(Item).where(*clauses)) or 0
    rows = await session.scalars(stmt.limit(limit).offset(offset))
    return rows.all(), total


async def update(
    *,
    session: AsyncSession,
    cache: Cache,
    principal: Principal,
    item_id: uuid.UUID,
    changes: ItemUpdate,
) -> tuple[Item, dict[str, Any]]:
    item = await get(session=session, principal=principal, item_id=item_id)
    data = changes.model_dump(exclude_unset=True)
    for field in ("name", "price"):
        if field in data and data[field] is None:
            raise AppError(422, f"{field} cannot be null", code="validation_error")
    if "tags" in data and data["tags"] is None:
        data["tags"] = []
    for field, value in data.items():
        setattr(item, field, value)
    await session.commit()
    await cache.delete(item_key(item_id))
    return item, data


async def delete(
    *, session: AsyncSession, cache: Cache, principal: Principal, item_id: uuid.UUID
) -> None:
    item = await get(session=session, principal=principal, item_id=item_id)
    await session.delete(item)
    await session.commit()
    await cache.delete(item_key(item_id))
