"""Items: owner-scoped CRUD. A user sees only their own items; an admin sees all.

Someone else's item answers 404, exactly like a missing one, so that guessing ids
reveals nothing.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import ColumnElement, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.core.cache import TOMBSTONE, Cache
from app.core.db import Database
from app.core.errors import AppError
from app.models import Item, next_updated_at, utcnow, version_of
from app.schemas import ItemCreate, ItemPublic, ItemSort, ItemUpdate, Page
from app.services.item_cache import GONE, generation, invalidate_lists, item_key
from app.services.users import Principal

_SORT_COLUMNS: dict[str, Any] = {
    "created_at": Item.created_at,
    "updated_at": Item.updated_at,
    "name": Item.name,
    "price": Item.price,
}


_COLUMNS = tuple(Item.__table__.columns)
_PUBLIC = TypeAdapter(ItemPublic)
_PAGE = TypeAdapter(list[ItemPublic])
_LIST_PAGE = TypeAdapter(Page[ItemPublic])
# Built once: the values go in as parameters, so the compiled statement is reused.
_INSERT = insert(Item).returning(*_COLUMNS)


def _encode(row: Any) -> bytes:
    """A row of ``_COLUMNS``, or an Item, as the encoded JSON of ItemPublic, as
    responses and the cache carry it."""
    return _PUBLIC.dump_json(_PUBLIC.validate_python(row))


def _not_found() -> AppError:
    return AppError(404, "Item not found")


def _visible(item_owner: uuid.UUID, principal: Principal) -> bool:
    return principal.is_admin or item_owner == principal.id


async def create(
    *, db: Database, cache: Cache, principal: Principal, data: ItemCreate
) -> tuple[uuid.UUID, bytes]:
    """Store a new item of ``principal``'s; returns its id and its encoded JSON document.

    One INSERT ... RETURNING in autocommit, without the ORM's unit of work: creating is
    the hottest write path, and the row comes back as the database stored it."""
    now = utcnow()
    values = {**data.model_dump(), "owner_id": principal.id, "created_at": now, "updated_at": now}
    async with db.connection() as conn:
        row = (await conn.execute(_INSERT, values)).one()
    await invalidate_lists(cache, principal.id)
    return row.id, _encode(row._mapping)


async def get_public(
    *, db: Database, cache: Cache, principal: Principal, item_id: uuid.UUID
) -> bytes:
    """The read path behind GET /items/{id}: the item as its encoded JSON document
    (ItemPublic), from the cache when it can be (a hit needs no database session)."""

    async def load() -> tuple[int, bytes]:
        async with db.connection() as conn:
            row = (await conn.execute(select(*_COLUMNS).where(Item.id == item_id))).one_or_none()
        if row is None:
            return TOMBSTONE, GONE
        return version_of(row.updated_at), _encode(row._mapping)

    document = await cache.get_or_load(item_key(item_id), load)
    if document == GONE or not (
        principal.is_admin or json.loads(document)["owner_id"] == str(principal.id)
    ):
        raise _not_found()
    return document


async def get(
    *, session: AsyncSession, principal: Principal, item_id: uuid.UUID, for_update: bool = False
) -> Item:
    item = await session.get(
        Item, item_id, with_for_update=for_update, populate_existing=for_update
    )
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


@dataclass(frozen=True)
class ItemQuery:
    """Which page of which items a listing asks for."""

    limit: int
    offset: int = 0
    q: str | None = None
    owner_id: uuid.UUID | None = None
    sort: ItemSort = ItemSort.created_at_desc


async def list_page(*, db: Database, cache: Cache, principal: Principal, query: ItemQuery) -> bytes:
    """One page of items as its encoded JSON document (Page[ItemPublic]), from the
    cache when it can be."""
    if query.owner_id is not None and not principal.is_admin:
        raise AppError(403, "Only admins can filter by owner", code="forbidden")
    scope = str(principal.id) if not principal.is_admin else str(query.owner_id or "all")
    params = json.dumps([query.limit, query.offset, query.q, query.sort.value])
    key = f"items:page:{scope}:{await generation(cache, scope)}:{params}"

    async def load() -> tuple[int, bytes]:
        async with db.connection() as conn:
            rows, total = await list_items(conn, principal=principal, query=query)
        page = Page[ItemPublic](items=rows, total=total, limit=query.limit, offset=query.offset)
        # Pages are never written over: a write moves to a new generation of keys.
        return 0, _LIST_PAGE.dump_json(page)

    return await cache.get_or_load(key, load)


async def list_items(
    conn: AsyncConnection, *, principal: Principal, query: ItemQuery
) -> tuple[list[ItemPublic], int]:
    """One page of the items ``principal`` may see, and how many there are in all.

    One statement: the total is a window count over the same rows, so page and total
    always agree, even without a transaction around them. Rows are read as plain
    columns, not ORM objects: a page of 100 items costs about half as much that way."""
    clauses = _filters(principal, query.q, query.owner_id)
    column = _SORT_COLUMNS[query.sort.value.lstrip("-")]
    descending = query.sort.value.startswith("-")
    order = (column.desc(), Item.id.desc()) if descending else (column.asc(), Item.id.asc())
    stmt = select(*_COLUMNS, func.count().over().label("total")).where(*clauses).order_by(*order)
    rows = (await conn.execute(stmt.limit(query.limit).offset(query.offset))).mappings().all()
    if rows:
        total = int(rows[0]["total"])
    elif query.offset == 0:
        total = 0
    else:  # past the end: no row carries the count
        total = await conn.scalar(select(func.count()).select_from(Item).where(*clauses)) or 0
    return _PAGE.validate_python(rows), total


async def update(
    *,
    session: AsyncSession,
    cache: Cache,
    principal: Principal,
    item_id: uuid.UUID,
    changes: ItemUpdate,
) -> bytes:
    """Apply ``changes`` to one of ``principal``'s items (any item, for an admin);
    returns the item's new encoded JSON document, which the cache now holds too.

    The row is locked while it changes, so concurrent writes of one item commit one
    after the other, and each sets ``updated_at`` past the one before it (even when
    replicas' clocks disagree): that timestamp orders the cached states."""
    item = await get(session=session, principal=principal, item_id=item_id, for_update=True)
    data = changes.model_dump(exclude_unset=True)
    for field in ("name", "price"):
        if field in data and data[field] is None:
            raise AppError(422, f"{field} cannot be null", code="validation_error")
    if "tags" in data and data["tags"] is None:
        data["tags"] = []
    for field, value in data.items():
        setattr(item, field, value)
    item.updated_at = next_updated_at(item.updated_at)
    await session.commit()
    # The new state at its version: an older one (a read that fetched the row before
    # this write, or a write that committed before it) cannot replace it.
    document = _encode(item)
    await cache.put(item_key(item_id), document, version=version_of(item.updated_at))
    await invalidate_lists(cache, item.owner_id)
    return document


async def delete(
    *, session: AsyncSession, cache: Cache, principal: Principal, item_id: uuid.UUID
) -> None:
    item = await get(session=session, principal=principal, item_id=item_id, for_update=True)
    owner_id = item.owner_id
    await session.delete(item)
    await session.commit()
    await cache.put(item_key(item_id), GONE, version=TOMBSTONE)
    await invalidate_lists(cache, owner_id)
