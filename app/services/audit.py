"""The audit log of item changes, written in the background after the response."""

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
# Rows held beyond this (queued or being written: the database is slow or down) make
# ``record`` wait for its row to be handled: memory stays bounded, and the requests
# feel the back-pressure.
_HIGH_WATER = 5000


class AuditLog:
    """Stores audit rows in the background, batched like a group commit.

    ``record`` queues its row and returns. One writer task stores what is queued, up to
    ``max_batch`` rows in one INSERT, then what was queued meanwhile: under load one
    connection and one round trip carry many rows instead of one each, and a request
    ends as soon as its response is sent rather than staying in memory until its row
    is stored. A batch that fails is logged once, with the ids of the requests that
    recorded its rows, and its rows are counted in
    ``fastship_background_task_failures_total{task="audit"}``; it is not retried.
    ``close`` waits for every queued row."""

    def __init__(
        self, db: Database, *, max_batch: int = _MAX_BATCH, high_water: int = _HIGH_WATER
    ) -> None:
        self._db = db
        self._max_batch = max_batch
        self._high_water = high_water
        self._pending: list[tuple[dict[str, Any], asyncio.Future[None] | None]] = []
        self._writer: asyncio.Task[None] | None = None
        self._writing = 0  # rows in the INSERT under way

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
        handled = None
        if len(self._pending) + self._writing >= self._high_water:
            handled = asyncio.get_running_loop().create_future()
        self._pending.append((row, handled))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending())
        if handled is not None:
            await handled

    async def _write_pending(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            self._pending = self._pending[self._max_batch :]
            self._writing = len(batch)
            try:
                # One INSERT in autocommit for the whole batch (insertmanyvalues).
                async with self._db.connection() as conn:
                    await conn.execute(_INSERT, [row for row, _ in batch])
            except Exception as exc:
                _log_failure(exc, [row for row, _ in batch])
            self._writing = 0
            for _, handled in batch:
                if handled is not None and not handled.done():
                    handled.set_result(None)

    async def close(self) -> None:
        """Wait for rows already recorded to be written."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)


def _report_failure(task: str, exc: BaseException, *, count: int = 1, **extra: Any) -> None:
    """Failed background work: one log line (with the current request id) and
    ``count`` in the failures metric."""
    metrics.BACKGROUND_FAILURES.labels(task).inc(count)
    log.error("background task failed", exc_info=exc, extra={"task": task, **extra})


# Request ids named in the log line of a failed batch; the rest are counted.
_IDS_LOGGED = 100


def _log_failure(exc: Exception, rows: list[dict[str, Any]]) -> None:
    """One line for the whole batch (a batch holds up to 1000 rows): how many rows were
    lost and which requests recorded them."""
    request_ids = [row["request_id"] for row in rows]
    _report_failure(
        "audit",
        exc,
        count=len(rows),
        rows=len(rows),
        request_ids=request_ids[:_IDS_LOGGED],
        request_ids_omitted=max(0, len(request_ids) - _IDS_LOGGED),
    )


def guarded(name: str, task: Callable[P, Awaitable[None]]) -> Callable[P, Awaitable[None]]:
    """Wrap a background task so that its failure is logged, with the request id,
    and counted, but never reaches the request that scheduled it."""

    async def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            await task(*args, **kwargs)
        except Exception as exc:
            _report_failure(name, exc)

    return run
