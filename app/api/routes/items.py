from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Response

from app.api.deps import CurrentUser, Services, ServicesDep, SessionDep
from app.core import errors
from app.schemas import ItemCreate, ItemPublic, ItemSort, ItemUpdate, Page, Text
from app.services import audit, items
from app.services.users import Principal

router = APIRouter(prefix="/items", tags=["items"])


def _audit(
    background: BackgroundTasks,
    services: Services,
    principal: Principal,
    action: str,
    item_id: uuid.UUID,
    data: dict[str, Any] | None = None,
) -> None:
    background.add_task(
        audit.guarded("audit", services.audit.record),
        actor_id=principal.id,
        action=action,
        entity="item",
        entity_id=str(item_id),
        data=data,
    )


@router.post(
    "", response_model=ItemPublic, status_code=201, responses=errors.responses(400, 401, 422)
)
async def create_item(
    body: ItemCreate, principal: CurrentUser, services: ServicesDep, background: BackgroundTasks
) -> Response:
    item_id, document = await items.create(
        db=services.db, cache=services.cache, principal=principal, data=body
    )
    _audit(background, services, principal, "create", item_id, body.model_dump(mode="json"))
    return Response(document, status_code=201, media_type="application/json")


@router.get("", response_model=Page[ItemPublic], responses=errors.responses(401, 403, 422))
async def list_items(
    principal: CurrentUser,
    services: ServicesDep,
    limit: Annotated[
        int | None,
        Query(ge=1, le=100, description="Page size (default: 50, FASTSHIP_DEFAULT_PAGE_SIZE)."),
    ] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    q: Annotated[
        Text | None,
        Query(max_length=200, description="Text to find in name or description."),
    ] = None,
    owner_id: Annotated[
        uuid.UUID | None, Query(description="Only this owner's items (admins only).")
    ] = None,
    sort: Annotated[ItemSort, Query(description="Sort key; prefix '-' for descending.")] = (
        ItemSort.created_at_desc
    ),
) -> Response:
    """Your items, newest first; admins see everyone's."""
    limit = limit or services.settings.default_page_size
    query = items.ItemQuery(limit=limit, offset=offset, q=q, owner_id=owner_id, sort=sort)
    page = await items.list_page(
        db=services.db, cache=services.cache, principal=principal, query=query
    )
    # Already the encoded Page[ItemPublic]: sent as it is, without a second validation.
    return Response(page, media_type="application/json")


@router.get("/{item_id}", response_model=ItemPublic, responses=errors.responses(401, 404, 422))
async def read_item(item_id: uuid.UUID, principal: CurrentUser, services: ServicesDep) -> Response:
    document = await items.get_public(
        db=services.db, cache=services.cache, principal=principal, item_id=item_id
    )
    # Already the encoded ItemPublic: sent as it is, without a second validation.
    return Response(document, media_type="application/json")


@router.patch(
    "/{item_id}", response_model=ItemPublic, responses=errors.responses(400, 401, 404, 422)
)
async def update_item(
    item_id: uuid.UUID,
    body: ItemUpdate,
    principal: CurrentUser,
    services: ServicesDep,
    session: SessionDep,
    background: BackgroundTasks,
) -> Response:
    document = await items.update(
        session=session, cache=services.cache, principal=principal, item_id=item_id, changes=body
    )
    _audit(
        background,
        services,
        principal,
        "update",
        item_id,
        body.model_dump(mode="json", exclude_unset=True),
    )
    # The document the cache now holds: encoded once, for both.
    return Response(document, media_type="application/json")


@router.delete("/{item_id}", status_code=204, responses=errors.responses(401, 404, 422))
async def delete_item(
    item_id: uuid.UUID,
    principal: CurrentUser,
    services: ServicesDep,
    session: SessionDep,
    background: BackgroundTasks,
) -> Response:
    await items.delete(session=session, cache=services.cache, principal=principal, item_id=item_id)
    _audit(background, services, principal, "delete", item_id)
    return Response(status_code=204)
