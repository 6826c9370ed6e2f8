"""The connection pool serves waiting requests in turn, on a real database."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import text
from sqlalchemy.util import greenlet_spawn
from sqlalchemy.util.queue import Empty

from app.core.config import Settings
from app.core.db import Database
from app.core.pool import HandoffQueue, _expire


def test_a_newcomer_cannot_take_a_connection_handed_to_a_waiter() -> None:
    async def scenario() -> str:
        queue: HandoffQueue[str] = HandoffQueue(maxsize=2)
        waiter = asyncio.create_task(greenlet_spawn(queue.get))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not waiter.done()  # nothing idle: it waits
        queue.put_nowait("connection")  # given back while a request waits
        # A request arriving now, before the waiter has run, finds nothing idle.
        # (SQLAlchemy's asyncio.Queue would give it the connection, and the woken
        # waiter would go back to the end of the line.)
        with pytest.raises(Empty):
            queue.get_nowait()
        return await waiter

    assert asyncio.run(scenario()) == "connection"


def test_idle_connections_are_taken_without_waiting() -> None:
    queue: HandoffQueue[str] = HandoffQueue(maxsize=2)
    queue.put_nowait("a")
    queue.put_nowait("b")
    assert queue.full()
    assert queue.qsize() == 2
    assert [queue.get_nowait(), queue.get_nowait()] == ["a", "b"]
    assert queue.empty()
    with pytest.raises(Empty):
        queue.get_nowait()


def _turns(pg_database: str, *, workers: str, rounds: int) -> list[str]:
    async def scenario() -> list[str]:
        db = Database(Settings(database_url=pg_database, db_pool_size=1, db_max_overflow=0))
        order: list[str] = []

        async def worker(name: str) -> None:
            for _ in range(rounds):
                async with db.connection() as conn:
                    await conn.execute(text("SELECT 1"))
                    order.append(name)

        try:
            async with db.connection() as conn:  # the only connection, held
                await conn.execute(text("SELECT 1"))
                tasks = [asyncio.create_task(worker(name)) for name in workers]
                await asyncio.sleep(0.2)  # all of them now wait
            await asyncio.gather(*tasks)
        finally:
            await db.dispose()
        return order

    return asyncio.run(scenario())


def test_requests_that_keep_asking_take_turns(pg_database: str) -> None:
    assert _turns(pg_database, workers="abc", rounds=3) == list("abcabcabc")


def test_a_wait_that_times_out_is_refused_and_leaves_the_line(pg_database: str) -> None:
    async def scenario() -> tuple[str, int]:
        db = Database(
            Settings(
                database_url=pg_database,
                db_pool_size=1,
                db_max_overflow=0,
                db_pool_timeout_seconds=0.3,
            )
        )
        try:
            async with db.connection() as held:
                await held.execute(text("SELECT 1"))
                try:
                    async with db.connection():
                        pass
                except Exception as exc:
                    outcome = type(exc).__name__
                else:
                    outcome = "connected"
            # The timed-out waiter is gone: the connection is free for the next one.
            async with db.connection() as conn:
                value = int(await conn.scalar(text("SELECT 1")) or 0)
        finally:
            await db.dispose()
        return outcome, value

    assert asyncio.run(scenario()) == ("TimeoutError", 1)


def test_a_cancelled_waiter_does_not_take_a_connection_with_it(pg_database: str) -> None:
    async def scenario() -> int:
        db = Database(Settings(database_url=pg_database, db_pool_size=1, db_max_overflow=0))

        async def wait_for_connection() -> None:
            async with db.connection() as conn:
                await conn.execute(text("SELECT 1"))

        try:
            async with db.connection() as held:
                await held.execute(text("SELECT 1"))
                waiter = asyncio.create_task(wait_for_connection())
                await asyncio.sleep(0.2)
                waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)
            async with db.connection() as conn:
                return int(await asyncio.wait_for(conn.scalar(text("SELECT 1")), 10) or 0)
        finally:
            await db.dispose()

    assert asyncio.run(scenario()) == 1


@pytest.mark.parametrize("first", ["handed over", "timed out"])
def test_a_connection_handed_over_as_the_wait_times_out_is_never_lost(first: str) -> None:
    """The hand-over and the timeout in the same turn of the event loop, in either
    order: the waiter gets the connection, or times out and the connection stays idle
    for the next request."""

    async def scenario() -> tuple[str, str | None]:
        queue: HandoffQueue[str] = HandoffQueue(maxsize=2)
        getter = asyncio.create_task(greenlet_spawn(queue.get, True, 30.0))
        for _ in range(5):
            await asyncio.sleep(0)
        (waiter,) = queue._waiters
        if first == "handed over":
            queue.put_nowait("connection")
            _expire(waiter)
        else:
            _expire(waiter)
            queue.put_nowait("connection")
        try:
            outcome = await getter
        except Empty:
            outcome = "timed out"
        idle = queue.get_nowait() if not queue.empty() else None
        return outcome, idle

    expected = ("connection", None) if first == "handed over" else ("timed out", "connection")
    assert asyncio.run(scenario()) == expected


def test_a_connection_handed_over_in_the_turn_its_wait_times_out_is_kept() -> None:
    """The connection comes back just before the waiter's timeout, and the event loop
    (busy) reaches both in one turn. (asyncio.wait_for on Python 3.12 and later then
    raised TimeoutError and dropped the connection: the pool shrank by one for good.)"""

    async def scenario() -> tuple[str, str | None]:
        queue: HandoffQueue[str] = HandoffQueue(maxsize=2)
        getter = asyncio.create_task(greenlet_spawn(queue.get, True, 0.2))
        for _ in range(5):
            await asyncio.sleep(0)
        asyncio.get_running_loop().call_later(0.1, queue.put_nowait, "connection")
        time.sleep(0.3)  # noqa: ASYNC251 - a busy loop: hand-over and timeout both due now
        try:
            outcome = await getter
        except Empty:
            outcome = "timed out"
        return outcome, queue.get_nowait() if not queue.empty() else None

    outcome, idle = asyncio.run(scenario())
    assert "connection" in (outcome, idle), (outcome, idle)
