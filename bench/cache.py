"""`make bench-cache`: fastship's cache side by side with cachetools and cashews.

Every variant runs in one process, in interleaved rounds (the order rotates from one
round to the next), against one redis-server on loopback:

- ``fastship memory`` / ``fastship redis``: ``app.core.cache.MemoryCache`` (the version
  rule and ``SingleFlight`` over cachetools' ``TLRUCache``) and ``RedisCache``, as the
  service builds them.
- ``hand-rolled OrderedDict`` / ``cachetools TLRUCache, read with get`` /
  ``cachetools TTLCache``: the same version rule and single-flight over other
  storages: an ``OrderedDict`` LRU with per-entry expiry that drops expired entries
  from its least-recently-used end on each write (the hand-written alternative to
  cachetools), the ``TLRUCache`` of ``MemoryCache`` read through its ``get`` rather
  than by indexing, and cachetools' ``TTLCache`` (one TTL for the cache, so a shorter
  entry's expiry is checked on read).
- ``cashews memory`` / ``cashews redis``: cashews' read-through decorator
  (``@cache(ttl, key=..., protected=True)``; on Redis also with ``lock=True``, its
  lock across processes) around the same load, its ``set`` for writes.

Measured: the CPU of a cached read through the service (``GET /api/v1/items/{id}`` as
an ASGI call on an embedded SQLite file, each in-process variant as its cache); the
cost of a hit (``get`` and ``get_or_load`` of a cached key); N
concurrent ``get_or_load`` of one cold key whose load takes ``--load-ms`` (loads
run, time until all have the value, Redis commands sent), with two cache instances
for the Redis variants, as two replicas; which guarantees of the module's docstring
each variant keeps; memory per entry (tracemalloc in process, Redis's
``used_memory``); and code size. Prints Markdown tables; writes the raw numbers to
bench/results/. Not a test: numbers only.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import gc
import io
import json
import os
import statistics
import sys
import tempfile
import time
import tokenize
import tracemalloc
from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import cachetools
import cashews
import redis

from app.core.cache import TOMBSTONE, Load, MemoryCache, RedisCache, SingleFlight
from tests.support.redis import redis_server

ROOT = Path(__file__).resolve().parents[1]
TTL = 30.0
# An item's encoded JSON document is about this long.
VALUE = b'{"id":"0d9c3c52-6c0e-4a3a-9f61-2f1f3e1b7c11","name":"thing",' + b"x" * 240 + b"}"


# --- the variants -------------------------------------------------------------------


class Variant(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def get_or_load(self, key: str, load: Load, *, ttl: float | None = None) -> bytes: ...
    async def put(self, key: str, value: bytes, *, version: int) -> None: ...
    async def delete(self, *keys: str) -> None: ...
    async def close(self) -> None: ...


class Entry(NamedTuple):
    expires: float
    value: bytes
    version: int


class OrderedDictStore:
    """LRU with per-entry expiry over an ``OrderedDict``; each write drops expired
    entries from the least-recently-used end."""

    def __init__(self, max_entries: int) -> None:
        self.max = max_entries
        self.data: OrderedDict[str, Entry] = OrderedDict()

    def get(self, key: str) -> Entry | None:
        entry = self.data.get(key)
        if entry is None:
            return None
        if entry.expires < time.monotonic():
            self.data.pop(key, None)
            return None
        self.data.move_to_end(key)
        return entry

    def set(self, key: str, entry: Entry) -> None:
        now = time.monotonic()
        self.data[key] = entry
        self.data.move_to_end(key)
        while self.data:
            oldest, first = next(iter(self.data.items()))
            if first.expires > now and len(self.data) <= self.max:
                break
            del self.data[oldest]

    def pop(self, key: str) -> None:
        self.data.pop(key, None)


class TLRUGetStore:
    """cachetools' TLRUCache read through its ``get`` (as ``MemoryCache`` does not)."""

    def __init__(self, max_entries: int) -> None:
        self.data: cachetools.TLRUCache[str, Entry, float] = cachetools.TLRUCache(
            max_entries, ttu=lambda _key, entry, _now: entry.expires
        )

    def get(self, key: str) -> Entry | None:
        return self.data.get(key)

    def set(self, key: str, entry: Entry) -> None:
        self.data[key] = entry

    def pop(self, key: str) -> None:
        self.data.pop(key, None)


class TTLStore:
    """cachetools' TTLCache: one TTL for every entry, so an entry that must expire
    sooner (a shorter TTL, or a load's TTL counted from its start) is checked here."""

    def __init__(self, max_entries: int) -> None:
        self.data: cachetools.TTLCache[str, Entry] = cachetools.TTLCache(max_entries, ttl=TTL)

    def get(self, key: str) -> Entry | None:
        try:
            entry = self.data[key]
        except KeyError:
            return None
        return None if entry.expires < time.monotonic() else entry

    def set(self, key: str, entry: Entry) -> None:
        self.data[key] = entry

    def pop(self, key: str) -> None:
        self.data.pop(key, None)


class Storage(Protocol):
    def get(self, key: str) -> Entry | None: ...
    def set(self, key: str, entry: Entry) -> None: ...
    def pop(self, key: str) -> None: ...


class VersionedMemory:
    """The in-process cache's read-through, version rule and single-flight over
    ``store`` (what ``MemoryCache`` does over its storage)."""

    def __init__(self, store: Storage) -> None:
        self.store = store
        self.flights = SingleFlight()

    async def get(self, key: str) -> bytes | None:
        entry = self.store.get(key)
        return None if entry is None else (entry.value or None)

    async def get_or_load(self, key: str, load: Load, *, ttl: float | None = None) -> bytes:
        value = await self.get(key)
        if value:
            return value

        async def load_and_store() -> bytes:
            started = time.monotonic()
            version, loaded = await load()
            self.store_if_newer(key, loaded, version, started + (ttl or TTL))
            return loaded

        return await self.flights.run(key, load_and_store)

    def store_if_newer(self, key: str, value: bytes, version: int, expires: float) -> None:
        entry = self.store.get(key)
        if entry is None or (
            version > entry.version
            if version != entry.version
            else (entry.value == b"" and value != b"")
        ):
            self.store.set(key, Entry(expires, value, version))

    async def put(self, key: str, value: bytes, *, version: int) -> None:
        self.flights.detach((key,))
        self.store_if_newer(key, value, version, time.monotonic() + TTL)

    async def delete(self, *keys: str) -> None:
        self.flights.detach(keys)
        for key in keys:
            self.store.pop(key)

    async def close(self) -> None:
        return None


class CashewsVariant:
    """cashews' read-through decorator around the load of the key being read; writes
    are its ``set`` (it has no compare-and-set)."""

    def __init__(self, url: str, *, lock: bool) -> None:
        self.cache = cashews.Cache()
        if url.startswith("mem://"):
            self.cache.setup(url, size=100_000)
        else:
            self.cache.setup(url, suppress=True, client_side=False)
        self.loads: dict[str, Load] = {}

        @self.cache(ttl=TTL, key="{key}", protected=True, lock=lock)
        async def read(key: str) -> bytes:
            return (await self.loads[key]())[1]

        self.read = read

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self.cache.get(key)
        return value

    async def get_or_load(self, key: str, load: Load, *, ttl: float | None = None) -> bytes:
        self.loads[key] = load
        value: bytes = await self.read(key)
        return value

    async def put(self, key: str, value: bytes, *, version: int) -> None:
        await self.cache.set(key, value, expire=TTL)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            await self.cache.delete(key)

    async def close(self) -> None:
        await self.cache.close()


def variants(redis_url: str) -> dict[str, Callable[[], Variant]]:
    """Each variant's constructor: a fresh, empty instance per measurement."""
    return {
        "fastship memory": lambda: MemoryCache(ttl=TTL, max_entries=100_000),
        "hand-rolled OrderedDict": lambda: VersionedMemory(OrderedDictStore(100_000)),
        "cachetools TLRUCache, read with get": lambda: VersionedMemory(TLRUGetStore(100_000)),
        "cachetools TTLCache": lambda: VersionedMemory(TTLStore(100_000)),
        "cashews memory": lambda: CashewsVariant("mem://?check_interval=1", lock=False),
        "fastship redis": lambda: RedisCache(redis_url, ttl=TTL),
        "cashews redis": lambda: CashewsVariant(redis_url, lock=False),
        "cashews redis, lock=True": lambda: CashewsVariant(redis_url, lock=True),
    }


def shared(name: str) -> bool:
    return "redis" in name


# --- the measurements ---------------------------------------------------------------


def counted_load(value: bytes, *, version: int = 1, seconds: float = 0.0) -> Any:
    calls = 0

    async def load() -> tuple[int, bytes]:
        nonlocal calls
        calls += 1
        if seconds:
            # The load's duration (a query), not an ordering: every caller waits for it.
            await asyncio.sleep(seconds)
        return version, value

    def count() -> int:
        return calls

    return load, count


async def hits(make: Callable[[], Variant], *, count: int, budget: float) -> dict[str, float]:
    """Microseconds per ``get`` and per ``get_or_load`` of a cached key, of CPU time
    (this process's: what another process on the core does not add) and of wall time
    (with Redis's round trip): ``count`` calls, or fewer if ``budget`` seconds pass."""
    cache = make()
    load, _ = counted_load(VALUE)
    await cache.get_or_load("hit", load)
    out = {}
    for name, call in (
        ("get", lambda: cache.get("hit")),
        ("get_or_load", lambda: cache.get_or_load("hit", load)),
    ):
        done = 0
        deadline = time.perf_counter() + budget
        wall, cpu = time.perf_counter(), time.process_time()
        while done < count and time.perf_counter() < deadline:
            for _ in range(100):
                await call()
            done += 100
        out[f"{name}_cpu"] = (time.process_time() - cpu) / done * 1e6
        out[f"{name}_wall"] = (time.perf_counter() - wall) / done * 1e6
    await cache.delete("hit")
    await cache.close()
    return out


async def stampede(
    make: Callable[[], Variant], *, callers: int, load_ms: float, replicas: int, store: Any
) -> dict[str, float]:
    """``callers`` concurrent ``get_or_load`` of one cold key, spread over
    ``replicas`` instances: the loads run, the time until all have the value, and the
    Redis commands sent meanwhile."""
    instances = [make() for _ in range(replicas)]
    warm, _ = counted_load(VALUE)
    # Connections opened as a running service has them: this measures the loads.
    await asyncio.gather(
        *(instances[n % replicas].get_or_load("warm", warm) for n in range(callers))
    )
    key = f"cold:{time.monotonic_ns()}"
    load, loads = counted_load(VALUE, seconds=load_ms / 1000)
    commands = store.info("stats")["total_commands_processed"]
    start = time.perf_counter()
    finished: list[float] = []

    async def one(cache: Variant) -> None:
        assert await cache.get_or_load(key, load) == VALUE
        finished.append(time.perf_counter() - start)

    await asyncio.wait_for(
        asyncio.gather(*(one(instances[n % replicas]) for n in range(callers))), 60
    )
    sent = store.info("stats")["total_commands_processed"] - commands - 1
    for cache in instances:
        await cache.delete(key, "warm")
        await cache.close()
    return {
        "loads": loads(),
        "all_ms": max(finished) * 1000,
        "p50_ms": statistics.median(finished) * 1000,
        "redis_commands": sent,
    }


# Which guarantees of app/core/cache.py's docstring a variant keeps: each check builds
# the instances it needs and says True (kept), False, or None (does not apply).

Make = Callable[[], Variant]


async def older_version_cannot_replace_newer(make: Make, is_shared: bool) -> bool | None:
    cache = make()
    await cache.put("v", b"five", version=5)
    await cache.put("v", b"three", version=3)
    kept = await cache.get("v") == b"five"
    await cache.put("v", b"gone", version=TOMBSTONE)
    await cache.put("v", b"back", version=6)
    kept = kept and await cache.get("v") == b"gone"
    await cache.delete("v")
    await cache.close()
    return kept


async def a_load_older_than_a_write_cannot_overwrite_it(make: Make, is_shared: bool) -> bool | None:
    """In one process: a write lands while a load is under way."""
    cache = make()
    release = asyncio.Event()

    async def stale() -> tuple[int, bytes]:
        await release.wait()
        return 1, b"read before the write"

    early = asyncio.create_task(cache.get_or_load("w", stale))
    await asyncio.sleep(0.01)
    await cache.put("w", b"written", version=2)
    fresh, _ = counted_load(b"loaded after the write", version=3)
    later = asyncio.create_task(cache.get_or_load("w", fresh))
    await asyncio.sleep(0.01)
    release.set()
    await early
    kept = await later != b"read before the write"
    kept = kept and await cache.get("w") != b"read before the write"
    await cache.delete("w")
    await cache.close()
    return kept


async def a_read_after_a_write_on_another_replica_gets_it(
    make: Make, is_shared: bool
) -> bool | None:
    """Across replicas (Redis): replica A is loading when replica B writes; a request
    on A after the write gets what B wrote."""
    if not is_shared:
        return None
    a, b = make(), make()
    release = asyncio.Event()

    async def stale() -> tuple[int, bytes]:
        await release.wait()
        return 1, b"read before the write"

    early = asyncio.create_task(a.get_or_load("r", stale))
    await asyncio.sleep(0.01)
    await b.put("r", b"written", version=2)
    fresh, _ = counted_load(b"loaded after the write", version=3)
    later = asyncio.create_task(a.get_or_load("r", fresh))
    await asyncio.sleep(0.01)
    release.set()
    await early
    kept = await later != b"read before the write"
    await a.delete("r")
    await a.close()
    await b.close()
    return kept


async def a_cancelled_waiter_leaves_the_load_to_the_others(
    make: Make, is_shared: bool
) -> bool | None:
    cache = make()
    release = asyncio.Event()

    async def slow() -> tuple[int, bytes]:
        await release.wait()
        return 1, b"loaded"

    leader = asyncio.create_task(cache.get_or_load("c", slow))
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(cache.get_or_load("c", slow))
    await asyncio.sleep(0.01)
    waiter.cancel()
    await asyncio.sleep(0.01)
    release.set()
    try:
        return await asyncio.wait_for(leader, 5) == b"loaded"
    except (asyncio.CancelledError, TimeoutError):
        return False
    finally:
        await cache.delete("c")
        await cache.close()


async def expired_entries_leave_memory_at_the_next_write(
    make: Make, is_shared: bool
) -> bool | None:
    """In process: 200 entries of 10 kB that expire unread: their 2 MB is freed by the
    next write (Redis expires keys itself)."""
    if is_shared:
        return None
    cache = make()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(200):
            load, _ = counted_load(bytes(10_000) + str(i).encode())
            await cache.get_or_load(f"page:{i}", load, ttl=0.05)
        await asyncio.sleep(0.1)  # the entries' TTL passes
        await cache.put("new", b"page", version=1)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before < 500_000
    finally:
        tracemalloc.stop()
        await cache.close()


CHECKS = {
    "an older version cannot replace a newer one (put-if-newer, tombstone)": (
        older_version_cannot_replace_newer
    ),
    "a load that read before a write cannot overwrite it; later reads do not join it": (
        a_load_older_than_a_write_cannot_overwrite_it
    ),
    "across replicas: a read after a write on another replica gets the write": (
        a_read_after_a_write_on_another_replica_gets_it
    ),
    "a cancelled waiter does not cancel the others' load": (
        a_cancelled_waiter_leaves_the_load_to_the_others
    ),
    "expired entries leave memory at the next write": (
        expired_entries_leave_memory_at_the_next_write
    ),
}


async def memory_per_entry(
    name: str, make: Callable[[], Variant], *, entries: int, store: Any
) -> float:
    """Bytes per entry beyond its key and value: tracemalloc in process, Redis's
    ``used_memory`` for the Redis variants."""
    cache = make()
    keys = [f"item:{n:08d}-0d9c3c52-6c0e-4a3a-9f61" for n in range(entries)]
    values = [VALUE + str(n).encode() for n in range(entries)]
    await cache.put("warm", b"x", version=1)  # connects, loads scripts
    gc.collect()
    redis_before = store.info("memory")["used_memory"]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(entries):
            await cache.put(keys[n], values[n], version=n + 1)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    if shared(name):
        redis_bytes = store.info("memory")["used_memory"] - redis_before
        key_and_value = sum(len(k) + len(v) for k, v in zip(keys, values, strict=True))
        per_entry = float(redis_bytes - key_and_value) / entries
    else:
        per_entry = held / entries  # the keys and values were there before
    store.flushdb()
    await cache.close()
    return per_entry


# --- a cached read through the service ----------------------------------------------


class ServiceRead:
    """fastship in process on an embedded SQLite file, its cache swapped for each
    variant: ``GET /api/v1/items/{id}`` as ASGI calls (no HTTP parser, no socket), an
    account and an item both served from the cache."""

    def __init__(self, workdir: Path) -> None:
        from app.main import create_app
        from tests.app.conftest import make_settings

        self.app = create_app(make_settings(sqlite_path=workdir / "bench.db"))
        self.lifespan = self.app.router.lifespan_context(self.app)

    async def __aenter__(self) -> ServiceRead:
        import httpx

        await self.lifespan.__aenter__()
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            email = "bench@example.com"
            body = {"email": email, "password": "correct horse battery"}
            (await client.post("/api/v1/users/signup", json=body)).raise_for_status()
            token = await client.post(
                "/api/v1/auth/token", data={"username": email, "password": body["password"]}
            )
            token.raise_for_status()
            self.authorization = f"Bearer {token.json()['access_token']}".encode()
            auth = {"authorization": self.authorization.decode()}
            item = await client.post(
                "/api/v1/items", json={"name": "thing", "price": "1.50"}, headers=auth
            )
            item.raise_for_status()
            self.path = f"/api/v1/items/{item.json()['id']}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.lifespan.__aexit__(None, None, None)

    async def get(self) -> int:
        status = 0

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": self.path,
            "raw_path": self.path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"bench"), (b"authorization", self.authorization)],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
        }
        await self.app(scope, receive, send)
        return status

    async def cpu_per_read(
        self, makers: dict[str, Make], *, reads: int, block: int = 100
    ) -> dict[str, float]:
        """CPU µs per cached read with each variant as the service's cache: blocks of
        ``block`` reads, one variant after the other, until each has done ``reads``."""
        services = self.app.state.services
        kept = services.cache
        caches = {name: make() for name, make in makers.items()}
        cpu = dict.fromkeys(caches, 0.0)
        try:
            for cache in caches.values():
                services.cache = cache
                assert await self.get() == 200  # the account and the item now cached
            for _ in range(reads // block):
                for name, cache in caches.items():
                    services.cache = cache
                    start = time.process_time()
                    for _ in range(block):
                        await self.get()
                    cpu[name] += time.process_time() - start
        finally:
            services.cache = kept
            for cache in caches.values():
                await cache.close()
        return {name: total / (reads // block * block) * 1e6 for name, total in cpu.items()}


# --- code size ----------------------------------------------------------------------


def code_lines(source: str, first: int = 1, last: int | None = None) -> int:
    """Lines with code between ``first`` and ``last``: no blank lines, comments or
    docstrings."""
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                docstrings.update(range(body[0].lineno, (body[0].end_lineno or 0) + 1))
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT):
            continue
        if token.type in (tokenize.DEDENT, tokenize.ENDMARKER):
            continue
        lines.update(range(token.start[0], token.end[0] + 1))
    return len({n for n in lines - docstrings if n >= first and (last is None or n <= last)})


def code_size() -> dict[str, int]:
    """Code lines of app/core/cache.py by part, and of the two libraries."""
    path = ROOT / "app" / "core" / "cache.py"
    source = path.read_text()
    sizes = {"app/core/cache.py": code_lines(source)}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            sizes[f"  {node.name}"] = code_lines(source, node.lineno, node.end_lineno)
    bench = Path(__file__).read_text()
    for node in ast.parse(bench).body:
        if isinstance(node, ast.ClassDef) and node.name.endswith("Store"):
            sizes[f"bench {node.name}"] = code_lines(bench, node.lineno, node.end_lineno)
    for package in ("cachetools", "cashews"):
        files = [f for f in metadata.files(package) or [] if f.suffix == ".py"]
        sizes[f"{package} {metadata.version(package)} (package)"] = sum(
            code_lines(Path(str(f.locate())).read_text()) for f in files
        )
    return sizes


# --- the run ------------------------------------------------------------------------


async def run(args: argparse.Namespace, redis_url: str) -> dict[str, Any]:
    store = redis.Redis.from_url(redis_url)
    makers = variants(redis_url)
    names = list(makers)
    load_before = os.getloadavg()
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        this: dict[str, Any] = {"order": order}
        for name in order:
            count = args.hits if not shared(name) else args.hits // 100
            this[name] = {
                **await hits(makers[name], count=count, budget=2.0),
                **await stampede(
                    makers[name],
                    callers=args.callers,
                    load_ms=args.load_ms,
                    replicas=2 if shared(name) else 1,
                    store=store,
                ),
            }
        rounds.append(this)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    in_process = [n for n in names if not shared(n)]
    reads: dict[str, list[float]] = {name: [] for name in in_process}
    with tempfile.TemporaryDirectory(prefix="fastship-bench-cache-") as workdir:
        async with ServiceRead(Path(workdir)) as service:
            await service.cpu_per_read({n: makers[n] for n in in_process}, reads=200)  # warm-up
            for r in range(args.rounds):
                order = in_process[r % len(in_process) :] + in_process[: r % len(in_process)]
                per_read = await service.cpu_per_read(
                    {n: makers[n] for n in order}, reads=args.reads
                )
                for name, cpu in per_read.items():
                    reads[name].append(cpu)
    checks = {
        name: {
            check: await asyncio.wait_for(function(makers[name], shared(name)), 30)
            for check, function in CHECKS.items()
        }
        for name in names
    }
    memory = {
        name: statistics.median(
            [
                await memory_per_entry(name, makers[name], entries=args.entries, store=store)
                for _ in range(3)
            ]
        )
        for name in names
    }
    store.close()
    return {
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "rounds": rounds,
        "cached_read_cpu_us": reads,
        "checks": checks,
        "memory_bytes_per_entry": memory,
        "code_lines": code_size(),
        "settings": vars(args),
    }


def report(result: dict[str, Any]) -> str:
    rounds = result["rounds"]
    names = list(variants("redis://unused"))
    base = {"memory": "fastship memory", "redis": "fastship redis"}

    def median(name: str, field: str) -> float:
        return float(statistics.median(r[name][field] for r in rounds))

    s = result["settings"]
    out = [
        f"load average before {result['load_average_before'][0]:.2f}, "
        f"after {result['load_average_after'][0]:.2f}; {s['rounds']} interleaved rounds",
        "",
        "Hits: CPU µs per call (this process's CPU time: what the other load on the machine "
        "does not add) and wall µs (with Redis's round trip); the ratio is to fastship's "
        "own variant of the same kind, on CPU in process and on wall time with Redis.",
        "",
        f"| variant | get hit CPU µs | get_or_load hit CPU µs | wall µs | ratio "
        f"| {s['callers']} cold misses: loads | all served ms | p50 ms | Redis commands |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        ref = base["redis" if shared(name) else "memory"]
        field = "get_or_load_wall" if shared(name) else "get_or_load_cpu"
        ratio = median(name, field) / median(ref, field)
        loads = sorted({int(r[name]["loads"]) for r in rounds})
        out.append(
            f"| {name} | {median(name, 'get_cpu'):.2f} | {median(name, 'get_or_load_cpu'):.2f} "
            f"| {median(name, 'get_or_load_wall'):.2f} | {ratio:.2f} "
            f"| {'/'.join(map(str, loads))} | {median(name, 'all_ms'):.1f} "
            f"| {median(name, 'p50_ms'):.1f} | {median(name, 'redis_commands'):.0f} |"
        )
    reads = result["cached_read_cpu_us"]
    own = reads["fastship memory"]
    out += [
        "",
        "Service: CPU µs per cached `GET /api/v1/items/{id}` (ASGI call: middleware, "
        "authentication and the item, both from the cache), the variants taking turns "
        "every 100 reads. Median of the rounds; the difference and the ratio to fastship "
        "memory are the medians of each round's.",
        "",
        "| variant | CPU µs per read | rounds' range | difference µs | ratio "
        "| rounds cheaper than fastship |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, values in reads.items():
        pairs = list(zip(values, own, strict=True))
        out.append(
            f"| {name} | {statistics.median(values):.0f} "
            f"| {min(values):.0f} to {max(values):.0f} "
            f"| {statistics.median(v - f for v, f in pairs):+.1f} "
            f"| {statistics.median(v / f for v, f in pairs):.3f} "
            f"| {sum(v < f for v, f in pairs)} of {len(pairs)} |"
        )
    out += ["", "| guarantee | " + " | ".join(names) + " |"]
    out.append("|---|" + "---|" * len(names))
    for check in CHECKS:
        cells = []
        for name in names:
            kept = result["checks"][name].get(check)
            cells.append("n/a" if kept is None else ("kept" if kept else "**no**"))
        out.append(f"| {check} | " + " | ".join(cells) + " |")
    out += ["", "| variant | bytes per entry beyond key and value |", "|---|---:|"]
    for name in names:
        out.append(f"| {name} | {result['memory_bytes_per_entry'][name]:.0f} |")
    out += ["", "| code | lines |", "|---|---:|"]
    for part, lines in result["code_lines"].items():
        out.append(f"| {part} | {lines} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hits", type=int, default=200_000, help="hits per round (in process)")
    parser.add_argument("--callers", type=int, default=50, help="concurrent cold misses")
    parser.add_argument("--load-ms", type=float, default=5.0, help="how long a load takes")
    parser.add_argument("--reads", type=int, default=5000, help="service reads per round")
    parser.add_argument("--entries", type=int, default=10_000, help="entries for memory")
    args = parser.parse_args()
    with redis_server() as url:
        result = asyncio.run(run(args, url))
    text = report(result)
    print(text)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (results / f"cache-{stamp}.json").write_text(json.dumps(result, indent=2))
    (results / f"cache-{stamp}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
