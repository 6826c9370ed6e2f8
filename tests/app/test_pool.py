"""Waiting for a database connection: requests are served in the order they asked, a
wait that runs out answers 503, a request that gives up leaves no connection behind.
On a real database, through ``Database.connection()`` as the service uses it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import exc, text

from app.core import errors
from app.core.config import Settings
from app.core.db import Database


def _one_connection(url: str, **settings: Any) -> Database:
    return Database(Settings(database_url=url, db_pool_size=1, db_max_overflow=0, **settings))


async def _select_one(db: Database) -> int:
    async with db.connection() as conn:
        return int(await conn.scalar(text("SELECT 1")) or 0)


async def _start_in_line(*coroutines: Any) -> list[asyncio.Task[Any]]:
    """Tasks for ``coroutines``, in this order, each one run until it waits.
    (Asking for a connection takes a place in line before it first yields.)"""
    tasks = [asyncio.create_task(c) for c in coroutines]
    await asyncio.sleep(0)
    assert not any(task.done() for task in tasks)
    return tasks


async def _turns_of_the_loop(count: int) -> None:
    """Let the event loop run ``count`` times: a request that comes back after a few
    turns arrives while the waiter woken for a returned connection is on its way to it
    (SQLAlchemy's pool takes several turns to get there)."""
    for _ in range(count):
        await asyncio.sleep(0)


@pytest.mark.parametrize("turns", [0, 1, 2, 3, 4, 5])
def test_requests_that_keep_asking_take_turns(pg_database: str, turns: int) -> None:
    """Each worker asks again ``turns`` turns of the loop after it gave its connection
    back, whatever the next in line is doing: it goes to the end of the line, it does
    not take the connection first. (SQLAlchemy's pool alone, at 3 turns: 'abcbcacba'.)"""

    async def scenario() -> str:
        db = _one_connection(pg_database)
        order: list[str] = []

        async def worker(name: str) -> None:
            for _ in range(3):
                async with db.connection() as conn:
                    await conn.execute(text("SELECT 1"))
                    order.append(name)
                await _turns_of_the_loop(turns)

        try:
            async with db.connection() as held:  # the only connection
                await held.execute(text("SELECT 1"))
                workers = await _start_in_line(*(worker(name) for name in "abc"))
            await asyncio.wait_for(asyncio.gather(*workers), 30)
        finally:
            await db.dispose()
        return "".join(order)

    assert asyncio.run(scenario()) == "abcabcabc"


def test_no_waiter_starves_under_contention(pg_database: str) -> None:
    """Twenty clients on two connections, each asking again 0 to 4 turns of the loop
    after its last request: between two requests of one client, the others are
    served about once each, not many times over."""

    async def scenario() -> tuple[dict[int, int], int]:
        db = Database(Settings(database_url=pg_database, db_pool_size=2, db_max_overflow=0))
        served: list[int] = []

        async def client(n: int) -> None:
            for _ in range(10):
                async with db.connection() as conn:
                    await conn.execute(text("SELECT 1"))
                    served.append(n)
                await _turns_of_the_loop(n % 5)

        try:
            await asyncio.wait_for(asyncio.gather(*(client(n) for n in range(20))), 60)
        finally:
            await db.dispose()
        # The most requests served to others between two of one client's.
        longest: dict[int, int] = {}
        last: dict[int, int] = {}
        for i, n in enumerate(served):
            longest[n] = max(longest.get(n, 0), i - last.get(n, i))
            last[n] = i
        return longest, len(served)

    longest, total = asyncio.run(scenario())
    assert total == 200
    # In line, a client waits for the 19 others at most, and for what the two connections
    # and its own few turns of the loop let through (26 seen under load); overtaken, it
    # waits for many rounds of them (68 on SQLAlchemy's pool alone).
    assert max(longest.values()) <= 30, longest


def test_a_wait_that_runs_out_answers_503_and_leaves_the_line(pg_database: str) -> None:
    async def scenario() -> tuple[int, dict[str, Any], str | None, int]:
        db = _one_connection(pg_database, db_pool_timeout_seconds=0.3)
        app = FastAPI()
        errors.install(app)

        @app.get("/one")
        async def one() -> int:
            return await _select_one(db)

        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        try:
            async with db.connection() as held:
                await held.execute(text("SELECT 1"))
                refused = await asyncio.wait_for(client.get("/one"), 10)
            # The request that timed out is out of the line: the next one is served.
            value = await asyncio.wait_for(_select_one(db), 10)
        finally:
            await client.aclose()
            await db.dispose()
        return refused.status_code, refused.json(), refused.headers.get("retry-after"), value

    status, body, retry_after, value = asyncio.run(scenario())
    assert (status, body["code"], retry_after) == (503, "database_unavailable", "5")
    assert value == 1


def test_a_wait_that_runs_out_raises_the_pools_timeout_error(pg_database: str) -> None:
    async def scenario() -> None:
        db = _one_connection(pg_database, db_pool_timeout_seconds=0.2)
        try:
            async with db.connection() as held:
                await held.execute(text("SELECT 1"))
                with pytest.raises(exc.TimeoutError):
                    await asyncio.wait_for(_select_one(db), 10)
        finally:
            await db.dispose()

    asyncio.run(scenario())


def test_a_cancelled_waiter_does_not_take_a_connection_with_it(pg_database: str) -> None:
    async def scenario() -> int:
        db = _one_connection(pg_database)
        try:
            async with db.connection() as held:
                await held.execute(text("SELECT 1"))
                (waiter,) = await _start_in_line(_select_one(db))
                waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)
            assert waiter.cancelled()
            return await asyncio.wait_for(_select_one(db), 10)
        finally:
            await db.dispose()

    assert asyncio.run(scenario()) == 1


def test_a_waiter_cancelled_as_its_turn_comes_passes_the_connection_on(
    pg_database: str,
) -> None:
    """The connection is given back, which makes the first waiter next, and that
    waiter is cancelled before it has run: the second waiter gets the connection."""

    async def scenario() -> int:
        db = _one_connection(pg_database, db_pool_timeout_seconds=10)
        try:
            async with db.connection() as held:
                await held.execute(text("SELECT 1"))
                first, second = await _start_in_line(_select_one(db), _select_one(db))
            first.cancel()  # same turn of the loop as the hand-over
            await asyncio.gather(first, return_exceptions=True)
            value: int = await asyncio.wait_for(second, 10)
            # And the connection is free again afterwards.
            return value + await asyncio.wait_for(_select_one(db), 10)
        finally:
            await db.dispose()

    assert asyncio.run(scenario()) == 2


def test_the_embedded_sqlite_file_serves_concurrent_requests(tmp_path: Path) -> None:
    async def scenario() -> list[int]:
        db = Database(Settings(database_url=f"sqlite:///{tmp_path / 'pool.db'}"))
        try:
            return await asyncio.wait_for(asyncio.gather(*(_select_one(db) for _ in range(40))), 30)
        finally:
            await db.dispose()

    assert asyncio.run(scenario()) == [1] * 40
