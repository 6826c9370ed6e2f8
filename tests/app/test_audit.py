"""The audit log's batched writer, on a real database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import event, text

from app.core.config import Settings
from app.core.db import Database
from app.core.logging import request_id_var
from app.services.audit import AuditLog


async def _record_concurrently(log: AuditLog, count: int) -> list[BaseException | None]:
    async def one(i: int) -> None:
        request_id_var.set(f"req-{i}")
        await log.record(actor_id=None, action="create", entity="item", entity_id=str(i))

    return await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)


def test_concurrent_records_are_stored_in_few_inserts(pg_database: str) -> None:
    async def scenario() -> tuple[Sequence[Any], int, list[BaseException | None]]:
        db = Database(Settings(database_url=pg_database))
        inserts = 0

        def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            nonlocal inserts
            inserts += statement.lstrip().upper().startswith("INSERT INTO AUDIT_EVENTS")

        event.listen(db.engine.sync_engine, "before_cursor_execute", count)
        log = AuditLog(db)
        try:
            outcomes = await _record_concurrently(log, 200)
            await log.close()
            async with db.connection() as conn:
                rows = (
                    await conn.execute(text("SELECT entity_id, request_id FROM audit_events"))
                ).all()
        finally:
            await db.dispose()
        return rows, inserts, outcomes

    rows, inserts, outcomes = asyncio.run(scenario())
    assert outcomes == [None] * 200
    # Every row, each with the request that recorded it ...
    assert sorted((int(r.entity_id), r.request_id) for r in rows) == [
        (i, f"req-{i}") for i in range(200)
    ]
    # ... in far fewer statements than rows: rows recorded while an INSERT is under
    # way wait for the next one and go together.
    assert 1 <= inserts <= 10


def test_a_failed_batch_fails_every_record_in_it(pg_database: str) -> None:
    async def scenario() -> list[BaseException | None]:
        db = Database(Settings(database_url=pg_database))
        async with db.connection() as conn:
            await conn.execute(text("DROP TABLE audit_events"))
        log = AuditLog(db)
        try:
            return await _record_concurrently(log, 20)
        finally:
            await log.close()
            await db.dispose()

    outcomes = asyncio.run(scenario())
    assert len(outcomes) == 20
    for outcome in outcomes:
        assert isinstance(outcome, Exception)
        assert "audit_events" in str(outcome)


@pytest.mark.parametrize("count", [1, 3])
def test_a_lone_record_is_written_at_once(pg_database: str, count: int) -> None:
    async def scenario() -> int:
        db = Database(Settings(database_url=pg_database))
        log = AuditLog(db)
        try:
            for _ in range(count):
                await log.record(
                    actor_id=uuid.uuid4(), action="delete", entity="item", entity_id="x"
                )
            async with db.connection() as conn:
                return int(await conn.scalar(text("SELECT count(*) FROM audit_events")) or 0)
        finally:
            await db.dispose()

    # Each record returned only once its row was stored: no close() needed first.
    assert asyncio.run(scenario()) == count
