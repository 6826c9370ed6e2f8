"""The audit log of item changes, written by background tasks after the response."""

from __future__ import annotations

import asyncio
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

_INSERT = insert(AuditEvent)
# Under sustained load every await of the writer waits a full turn of the event loop,
# so it stores few batches per second: big batches let it keep up with the requests.
_MAX_BATCH = 1000


class AuditLog:
    """Stores audit rows, batched like a group commit.

    ``record`` returns once its row is stored, and raises if it could not be. Rows
    recorded while an INSERT is on its way are stored together by the next one: under
    load, one connection and one round trip carry many rows instead of one each."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(
        self,
        *,
        actor_id: uuid.UUID | None,
        action: str,
        entity: str,
        entity_id: str,
        data: dict[str, Any] | None = None,
    ) -> None:
        row = {
            "at": utcnow(),
            "actor_id": actor_id,
            "action": action,
            "entity": entity,
            "entity_id": entity_id,
            "request_id": request_id_var.get(),
            "data": data or {},
        }
        stored = asyncio.get_running_loop().create_future()
        self._pending.append((row, stored))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending())
        await stored

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
            try:
                # One INSERT in autocommit for the whole batch (insertmanyvalues).
                async with self._db.connection() as conn:
                    await conn.execute(_INSERT, [row for row, _ in batch])
            except Exception as exc:
                for _, stored in batch:
                    if not stored.done():
                        stored.set_exception(exc)
            else:
                for _, stored in batch:
                    if not stored.done():
                        stored.set_result(None)

    async def close(self) -> None:
        """Wait for rows already recorded to be written."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)


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
