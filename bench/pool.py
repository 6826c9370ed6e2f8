"""`python -m bench.pool`: waiting for a pooled connection under contention, pool
against pool, side by side on one PostgreSQL.

50 concurrent clients share 15 connections (pool size 10 + 5 overflow, the service's
defaults). Each client, in a loop: some CPU work outside the connection (as a request
does before and after its statement), then a connection in autocommit mode for one
``INSERT … RETURNING``. A request's latency runs from asking for the connection to
giving it back. The pools take turns, round after round (A B C A B C …), for a fixed
number of requests each, and the table gives the median of each figure over the
rounds. Writes the raw numbers to bench/results/pool.json.

Pools: ``sqlalchemy`` (SQLAlchemy's asyncio pool as it ships), ``service``
(``Database.connection()``: the same pool behind an ``asyncio.Semaphore`` of its
size, which serves waiters in line), ``service-15+0`` (the same line over a pool of
15 connections without overflow), ``psycopg_pool`` (psycopg's ``AsyncConnectionPool``
under SQLAlchemy's ``NullPool``, as SQLAlchemy's psycopg dialect documents it; not a
dependency of the service, measured when installed). Besides latency: the share of
requests that a later request overtook, the process's CPU time per request, and the
database connections opened in the round (15 would do).
Options: --rounds, --requests, --clients, --pools.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from tests.support.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[1]
POOL_SIZE, MAX_OVERFLOW, TIMEOUT = 10, 5, 30.0
INSERT = text("INSERT INTO bench_items (name, data) VALUES (:name, :data) RETURNING id")


def busy(seconds: float) -> None:
    """CPU work on the event loop, as a request's parsing and encoding is."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class Variant:
    """One pool: ``connect()`` gives an autocommit connection, ``close()`` ends it."""

    name = ""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opened = 0  # database connections opened

    async def open(self) -> None:
        self.base = self.make_engine()
        self.engine = self.base.execution_options(isolation_level="AUTOCOMMIT")
        self.count_connections(self.base)

    def count_connections(self, engine: AsyncEngine) -> None:
        def opened(*_: object) -> None:
            self.opened += 1

        event.listen(engine.sync_engine.pool, "connect", opened)

    def connections_opened(self) -> int:
        return self.opened

    def make_engine(self) -> AsyncEngine:
        raise NotImplementedError

    def connect(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        return self.engine.connect()

    async def close(self) -> None:
        await self.base.dispose()


class Stock(Variant):
    name = "sqlalchemy"

    def make_engine(self) -> AsyncEngine:
        return create_async_engine(
            self.url, pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW, pool_timeout=TIMEOUT
        )


class Service(Variant):
    """``Database.connection()`` of app/core/db.py, as the service uses it."""

    name = "service"
    pool_size, max_overflow = POOL_SIZE, MAX_OVERFLOW

    async def open(self) -> None:
        from app.core.config import Settings
        from app.core.db import Database

        self.db = Database(
            Settings(
                database_url=self.url,
                db_pool_size=self.pool_size,
                db_max_overflow=self.max_overflow,
                db_pool_timeout_seconds=TIMEOUT,
            )
        )
        self.count_connections(self.db.engine)

    def connect(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        return self.db.connection()

    async def close(self) -> None:
        await self.db.dispose()


class ServiceWithoutOverflow(Service):
    """The same line, over a pool of all 15 connections and no overflow: returned
    connections are never closed, so none is opened again under load."""

    name = "service-15+0"
    pool_size, max_overflow = POOL_SIZE + MAX_OVERFLOW, 0


class PsycopgPool(Variant):
    name = "psycopg_pool"

    async def open(self) -> None:
        # Not a dependency of the service: measured when installed.
        psycopg_pool = importlib.import_module("psycopg_pool")
        conninfo = self.url.replace("postgresql+psycopg://", "postgresql://")
        self.pool = psycopg_pool.AsyncConnectionPool(
            conninfo,
            min_size=POOL_SIZE,
            max_size=POOL_SIZE + MAX_OVERFLOW,
            timeout=TIMEOUT,
            close_returns=True,
            open=False,
        )
        await self.pool.open(wait=True)
        await super().open()

    def make_engine(self) -> AsyncEngine:
        return create_async_engine(
            "postgresql+psycopg://", poolclass=NullPool, async_creator=self.pool.getconn
        )

    def count_connections(self, engine: AsyncEngine) -> None:
        pass  # under NullPool, every checkout is a "connect": psycopg's pool counts

    def connections_opened(self) -> int:
        return int(self.pool.get_stats().get("connections_num", 0))

    async def close(self) -> None:
        await super().close()
        await self.pool.close()


VARIANTS: dict[str, Callable[[str], Variant]] = {
    v.name: v for v in (Stock, Service, ServiceWithoutOverflow, PsycopgPool)
}


def available(name: str) -> bool:
    if name == "psycopg_pool":
        return importlib.util.find_spec("psycopg_pool") is not None
    return True


async def one_round(variant: Variant, *, clients: int, requests: int) -> dict[str, float]:
    """``clients`` loops until ``requests`` requests are done; their latencies."""
    await variant.open()
    latencies: list[float] = []
    served: list[tuple[float, float]] = []  # (asked, got) of each request
    remaining = requests
    payload = json.dumps({"k": "v" * 64})

    async def client(n: int) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            busy(0.0005)  # the request's work before its statement
            t0 = time.perf_counter()
            async with variant.connect() as conn:
                served.append((t0, time.perf_counter()))
                await conn.scalar(INSERT, {"name": f"c{n}", "data": payload})
            latencies.append(time.perf_counter() - t0)
            busy(0.0005)  # and after
            await asyncio.sleep(0)  # the response goes out; the next request comes in

    try:
        # Warm up: every connection opened before the clock starts.
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(POOL_SIZE):
                await stack.enter_async_context(variant.connect())
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.wait_for(asyncio.gather(*(client(n) for n in range(clients))), 300)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        opened = variant.connections_opened()
    finally:
        await variant.close()
    ms = sorted(x * 1000 for x in latencies)
    return {
        "rps": len(ms) / elapsed,
        "p50": ms[len(ms) // 2],
        "p99": ms[int(len(ms) * 0.99) - 1],
        "max": ms[-1],
        "mean": statistics.fmean(ms),
        "overtaken": overtaken_share(served),
        "cpu_us": cpu / len(ms) * 1e6,
        "opened": opened,
    }


def overtaken_share(served: list[tuple[float, float]]) -> float:
    """The share of requests that a later request overtook: it got a connection while
    the earlier one still waited."""
    overtaken = 0
    earliest_got_of_later = float("inf")
    for _asked, got in sorted(served, reverse=True):
        if earliest_got_of_later < got:
            overtaken += 1
        earliest_got_of_later = min(earliest_got_of_later, got)
    return overtaken / len(served)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--pools", default=",".join(VARIANTS))
    args = parser.parse_args()
    names = [n for n in args.pools.split(",") if n]
    for name in names:
        if name not in VARIANTS:
            parser.error(f"unknown pool {name!r}: one of {', '.join(VARIANTS)}")
    skipped = [n for n in names if not available(n)]
    names = [n for n in names if n not in skipped]
    pg = PostgresServer.temporary("fastship-bench-pg-")
    results: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    try:
        db = pg.create_database("bench")
        pg.psql(
            "CREATE TABLE bench_items (id bigserial PRIMARY KEY, name text, data jsonb, "
            "created_at timestamptz DEFAULT now())",
            db,
        )
        url = pg.url(db)
        for r in range(args.rounds):
            for name in names:
                row = asyncio.run(
                    one_round(VARIANTS[name](url), clients=args.clients, requests=args.requests)
                )
                results[name].append(row)
                print(
                    f"round {r + 1} {name:>13}: {row['rps']:7.0f} req/s  p50 {row['p50']:7.1f}"
                    f"  p99 {row['p99']:7.1f}  max {row['max']:7.1f} ms  overtaken "
                    f"{row['overtaken']:.1%}  cpu {row['cpu_us']:.0f} us  "
                    f"opened {row['opened']:.0f}",
                    flush=True,
                )
    finally:
        pg.discard()

    def med(name: str, key: str) -> float:
        return statistics.median(row[key] for row in results[name])

    print(f"\nload average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"{args.clients} clients, {POOL_SIZE}+{MAX_OVERFLOW} connections, "
        f"{args.requests} requests a round, median of {args.rounds} rounds\n"
    )
    print(
        "| pool | req/s | p50 ms | p99 ms | max ms | mean ms | overtaken | CPU µs/request "
        "| connections opened |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        print(
            f"| {name} | {med(name, 'rps'):.0f} | {med(name, 'p50'):.1f} | "
            f"{med(name, 'p99'):.1f} | {med(name, 'max'):.1f} | {med(name, 'mean'):.1f} | "
            f"{med(name, 'overtaken'):.1%} | {med(name, 'cpu_us'):.0f} | "
            f"{med(name, 'opened'):.0f} |"
        )
    for name in skipped:
        print(f"| {name} | not installed | | | | | | | |")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "pool.json").write_text(
        json.dumps({"args": vars(args), "load": os.getloadavg(), "rounds": results}, indent=1)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
