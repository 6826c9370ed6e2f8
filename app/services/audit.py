"""The audit log of item changes, written by a background task after the response."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec

from sqlalchemy import insert

from app.core import metrics
from app.core.db import Database
from app.core.logging import request_id_var
from app.models import AuditEvent, utcnow

log = logging.getLogger(__name__)

P = ParamSpec("P")


async def record(
    *,
    db: Database,
    actor_id: uuid.UUID | None,
    action: str,
    entity: str,
    entity_id: str,
    data: dict[str, Any] | None = None,
) -> None:
    # A plain INSERT on a connection of its own: no ORM unit of work to set up.
    async with db.engine.begin() as conn:
        await conn.execute(
            insert(AuditEvent),
            {
                "at": utcnow(),
                "actor_id": actor_id,
                "action": action,
                "entity": entity,
                "entity_id": entity_id,
                "request_id": request_id_var.get(),
                "data": data or {},
            },
        )


def guarded(name: str, task: Callable[P, Awaitable[None]]) -> Callable[P, Awaitable[None]]:
    """Wrap a background task so that its failure is logged, with the request id,
    and counted, but never reaches the request that scheduled it."""

    async def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            await task(*args, **kwargs)
        except Exception:
            metrics.BACKGROUND_FAILURES.labels(name).inc()
            log.exception("background task failed", extra={"task": name})

    return run
