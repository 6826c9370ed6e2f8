"""The audit log's batched writer, on a real database."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy import event, text

from app.core.config import Settings
from app.core.db import Database
from app.core.logging import request_id_var
from app.services.audit import AuditLog
from tests.app.conftest import LogLines
from tests.support.waiting import wait_until


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


def test_a_failed_batch_is_logged_once_with_its_requests_and_no_values(
    pg_database: str, logs: LogLines
) -> None:
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

    before = _failures()
    outcomes = asyncio.run(scenario())
    assert outcomes == [None] * 20  # the requests that recorded them are not failed
    failures = logs.matching(msg="background task failed", task="audit")
    # Rows recorded while the first INSERT failed go in a second batch: a line each.
    assert 1 <= len(failures) <= 2
    logged = sorted(i for f in failures for i in f["request_ids"])
    assert logged == sorted(f"req-{i}" for i in range(20))
    assert sum(f["rows"] for f in failures) == 20
    for failure in failures:
        assert "audit_events" in failure["error"]["message"]
        # The bound values (a request id is one) stay out of the log.
        assert "req-" not in failure["error"]["message"] + failure["error"]["stack"]
    assert _failures() - before == 20


def _failures() -> float:
    value = REGISTRY.get_sample_value("fastship_background_task_failures_total", {"task": "audit"})
    return value or 0.0


def _locked_audit_table(pg_database: str) -> sa.Connection:
    """A connection holding the audit table, so that INSERTs wait until it rolls back."""
    conn = sa.create_engine(pg_database).connect()
    conn.execute(text("LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE"))
    return conn


def _wait_for_blocked_insert(pg_database: str) -> None:
    """Until a statement waits for the audit table's lock (the writer's INSERT)."""
    engine = sa.create_engine(pg_database)
    try:
        with engine.connect() as conn:

            def blocked() -> bool:
                waiting = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE NOT granted"
                        " AND relation = 'audit_events'::regclass"
                    )
                ).scalar()
                conn.commit()
                return bool(waiting)

            wait_until(blocked, timeout=30, interval=0.05, what="the INSERT to wait for the lock")
    finally:
        engine.dispose()


def test_record_returns_before_the_row_is_stored_and_close_waits_for_it(
    pg_database: str,
) -> None:
    async def scenario() -> int:
        db = Database(Settings(database_url=pg_database))
        log = AuditLog(db)
        blocker = _locked_audit_table(pg_database)
        try:
            # The INSERT cannot run, yet each record returns: it only queues its row.
            for i in range(3):
                await asyncio.wait_for(
                    log.record(actor_id=None, action="create", entity="item", entity_id=str(i)),
                    timeout=10,
                )
            blocker.rollback()
            await log.close()
            async with db.connection() as conn:
                return int(await conn.scalar(text("SELECT count(*) FROM audit_events")) or 0)
        finally:
            blocker.close()
            await db.dispose()

    assert asyncio.run(scenario()) == 3


def test_past_the_high_water_mark_record_waits_for_its_row(pg_database: str) -> None:
    async def scenario() -> tuple[int, bool, int]:
        db = Database(Settings(database_url=pg_database))
        log = AuditLog(db, high_water=5)
        blocker = _locked_audit_table(pg_database)
        try:
            quick = 0
            for i in range(5):
                await log.record(actor_id=None, action="create", entity="item", entity_id=str(i))
                quick += 1
            # The sixth finds 5 rows queued behind a blocked INSERT: it waits.
            sixth = asyncio.create_task(
                log.record(actor_id=None, action="create", entity="item", entity_id="5")
            )
            await asyncio.to_thread(_wait_for_blocked_insert, pg_database)
            waited = not sixth.done()
            blocker.rollback()
            await asyncio.wait_for(sixth, timeout=30)
            await log.close()
            async with db.connection() as conn:
                stored = int(await conn.scalar(text("SELECT count(*) FROM audit_events")) or 0)
            return quick, waited, stored
        finally:
            blocker.close()
            await db.dispose()

    assert asyncio.run(scenario()) == (5, True, 6)
