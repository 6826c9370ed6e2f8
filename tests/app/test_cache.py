from __future__ import annotations

import asyncio
import gc
import json
import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
import sqlalchemy as sa

from app.core.cache import Cache, MemoryCache, RedisCache
from tests.app.conftest import Api


def test_redis_cache_is_shared_and_invalidated_across_replicas(
    api_factory: Any, redis_url: str
) -> None:
    replica_a: Api = api_factory(redis_url=redis_url)
    replica_b: Api = api_factory(redis_url=redis_url)
    _, headers = replica_a.user()
    item = replica_a.item(headers, name="before")
    assert (
        replica_b.client.get(f"/api/v1/items/{item['id']}", headers=headers).json()["name"]
        == "before"
    )
    store = redis.Redis.from_url(redis_url)
    assert store.exists(f"fastship:item:{item['id']}")
    replica_a.client.patch(f"/api/v1/items/{item['id']}", json={"name": "after"}, headers=headers)
    # The write stored the new state for every replica (not just dropped the entry),
    # behind its version.
    stored: bytes = store.get(f"fastship:item:{item['id']}")  # type: ignore[assignment]
    version, _, document = stored.partition(b":")
    assert int(version) > 0
    assert json.loads(document)["name"] == "after"
    assert (
        replica_b.client.get(f"/api/v1/items/{item['id']}", headers=headers).json()["name"]
        == "after"
    )
    # A cached read still checks ownership.
    _, other = replica_b.user()
    assert replica_b.client.get(f"/api/v1/items/{item['id']}", headers=other).status_code == 404
    store.close()


def test_cached_reads_skip_the_database(api: Api) -> None:
    _, headers = api.user()
    item = api.item(headers)
    assert api.client.get(f"/api/v1/items/{item['id']}", headers=headers).status_code == 200
    # Changed behind the service's back: the in-process cache still serves its copy
    # until a write through the API (or the TTL) invalidates it.
    api.sql("UPDATE items SET name = 'changed in SQL' WHERE id = :i", i=item["id"])
    assert api.client.get(f"/api/v1/items/{item['id']}", headers=headers).json()["name"] == "thing"
    api.client.patch(f"/api/v1/items/{item['id']}", json={"price": "2"}, headers=headers)
    fresh = api.client.get(f"/api/v1/items/{item['id']}", headers=headers).json()
    assert (fresh["name"], fresh["price"]) == ("changed in SQL", "2.00")


def test_the_cache_can_be_turned_off(api_factory: Any) -> None:
    api = api_factory(cache_ttl_seconds=0)
    _, headers = api.user()
    item = api.item(headers)
    api.client.get(f"/api/v1/items/{item['id']}", headers=headers)
    api.sql("UPDATE items SET name = 'changed in SQL' WHERE id = :i", i=item["id"])
    got = api.client.get(f"/api/v1/items/{item['id']}", headers=headers).json()
    assert got["name"] == "changed in SQL"


def test_a_redis_outage_only_slows_the_service(api_factory: Any) -> None:
    api = api_factory(redis_url="redis://127.0.0.1:1/0")
    _, headers = api.user()
    item = api.item(headers)
    assert api.client.get(f"/api/v1/items/{item['id']}", headers=headers).status_code == 200


def test_cached_list_pages_never_outlive_a_write(api_factory: Any, redis_url: str) -> None:
    replica_a: Api = api_factory(redis_url=redis_url)
    replica_b: Api = api_factory(redis_url=redis_url)
    owner, headers = replica_a.user()
    _, admin = replica_a.user(admin=True)
    item = replica_a.item(headers, name="first")

    def names(api: Api, auth: dict[str, str], query: str = "") -> list[str]:
        page = api.client.get(f"/api/v1/items{query}", headers=auth).json()
        return [i["name"] for i in page["items"]]

    assert names(replica_b, headers) == ["first"]  # now cached
    assert names(replica_b, admin, f"?owner_id={owner['id']}") == ["first"]
    assert names(replica_b, admin) == ["first"]
    replica_a.item(headers, name="second")
    assert names(replica_b, headers) == ["second", "first"]
    assert names(replica_b, admin) == ["second", "first"]
    replica_a.client.patch(f"/api/v1/items/{item['id']}", json={"name": "renamed"}, headers=headers)
    assert names(replica_b, admin, f"?owner_id={owner['id']}") == ["second", "renamed"]
    replica_a.client.delete(f"/api/v1/items/{item['id']}", headers=headers)
    assert names(replica_b, headers) == ["second"]
    replica_a.client.delete(f"/api/v1/users/{owner['id']}", headers=admin)
    assert names(replica_b, admin) == []


def test_a_stale_read_cannot_bring_back_a_revoked_token(api: Api) -> None:
    import uuid

    from app.services.users import principal_key

    user = api.signup()
    old = api.login(user["email"])
    assert api.client.get("/api/v1/users/me", headers=old).status_code == 200
    changed = api.client.post(
        "/api/v1/users/me/password",
        json={"current_password": "correct horse battery", "new_password": "a new password"},
        headers=old,
    )
    assert changed.status_code == 204
    # A request that read the account just before the change caches what it saw now.
    services = api.client.app.state.services  # type: ignore[attr-defined]
    stale = json.dumps({"id": user["id"], "role": "user", "active": True, "ver": 0}).encode()
    portal = api.client.portal
    assert portal is not None
    key = principal_key(uuid.UUID(user["id"]))
    portal.call(lambda: services.cache.put(key, stale, version=0))
    assert api.client.get("/api/v1/users/me", headers=old).status_code == 401


def test_the_memory_cache_lets_go_of_expired_entries_nobody_reads() -> None:
    """Pages cached under a list generation that a write replaced are never read
    again: they must not stay in memory until the entry limit pushes them out."""

    async def scenario() -> tuple[int, int, bytes | None, bytes | None]:
        cache = MemoryCache(ttl=0.2, max_entries=10_000)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i in range(500):
                page = b"x" * 10_000 + str(i).encode()
                await cache.put(f"items:page:old-generation:{i}", page, version=0)
            await cache.put("kept", b"still fresh", version=0)
            held = tracemalloc.get_traced_memory()[0] - before
            await asyncio.sleep(0.3)  # all 501 entries expire
            await cache.put("new", b"page", version=0)
            gc.collect()
            left = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        return held, left, await cache.get("new"), await cache.get("kept")

    held, left, new, kept = asyncio.run(scenario())
    assert new == b"page"
    assert kept is None
    assert held > 5_000_000  # the 500 pages of 10 kB
    # The expired pages went at the next write, though nobody read them again.
    assert left < 500_000, f"{left} bytes still held"


# Read-through: concurrent misses share one load. Run on the in-process cache and on
# a real redis-server.


def _caches(redis_url: str) -> list[Cache]:
    return [MemoryCache(ttl=30, max_entries=100), RedisCache(redis_url, ttl=30)]


class CountedLoad:
    """A load that waits for ``release`` and counts how often it ran."""

    def __init__(self, value: bytes = b"loaded", version: int = 1) -> None:
        self.calls = 0
        self.value = value
        self.version = version
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def __call__(self) -> tuple[int, bytes]:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        return self.version, self.value


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_concurrent_misses_of_one_key_run_one_load(redis_url: str) -> None:
    async def scenario(cache: Cache) -> None:
        load = CountedLoad()
        looked_up = 0
        all_looked_up = asyncio.Event()
        get = cache.get

        async def counted_get(key: str) -> bytes | None:
            nonlocal looked_up
            value = await get(key)
            looked_up += 1
            if looked_up == 20:
                all_looked_up.set()
            return value

        # Every reader must have missed before the load ends: one that looks the key
        # up in Redis while the load is being stored would (rightly) load again.
        cache.get = counted_get  # type: ignore[method-assign]
        readers = [asyncio.create_task(cache.get_or_load("k1", load)) for _ in range(20)]
        await asyncio.wait_for(all_looked_up.wait(), 30)
        load.release.set()
        assert await asyncio.gather(*readers) == [b"loaded"] * 20
        assert load.calls == 1
        assert await cache.get("k1") == b"loaded"  # stored for the next reader
        await cache.delete("k1")
        await cache.close()

    for cache in _caches(redis_url):
        asyncio.run(scenario(cache))


def test_a_write_during_a_load_wins_and_later_reads_do_not_join_the_old_load(
    redis_url: str,
) -> None:
    async def scenario(cache: Cache) -> None:
        stale = CountedLoad(b"read before the write")
        early = asyncio.create_task(cache.get_or_load("k2", stale))
        await asyncio.wait_for(stale.started.wait(), 30)
        await cache.put("k2", b"written", version=2)
        # Arrives after the write: served the write, not the load under way.
        fresh = CountedLoad(b"should not run")
        fresh.release.set()
        assert await cache.get_or_load("k2", fresh) == b"written"
        stale.release.set()
        assert await early == b"read before the write"  # what that request read
        assert await cache.get("k2") == b"written"  # and it could not store it
        assert fresh.calls == 0
        await cache.delete("k2")
        await cache.close()

    for cache in _caches(redis_url):
        asyncio.run(scenario(cache))


def test_a_failed_load_fails_its_waiters_and_is_not_stored() -> None:
    async def scenario() -> None:
        cache = MemoryCache(ttl=30, max_entries=10)
        release = asyncio.Event()

        async def failing() -> tuple[int, bytes]:
            await release.wait()
            raise RuntimeError("database unavailable")

        readers = [asyncio.create_task(cache.get_or_load("k3", failing)) for _ in range(3)]
        await _settle()
        release.set()
        outcomes = await asyncio.gather(*readers, return_exceptions=True)
        assert [str(o) for o in outcomes] == ["database unavailable"] * 3
        assert await cache.get("k3") is None
        retry = CountedLoad(b"recovered")
        retry.release.set()
        assert await cache.get_or_load("k3", retry) == b"recovered"

    asyncio.run(scenario())


def test_cancelling_a_waiter_or_the_loader_does_not_fail_the_others() -> None:
    async def scenario() -> None:
        cache = MemoryCache(ttl=30, max_entries=10)
        load = CountedLoad()
        leader = asyncio.create_task(cache.get_or_load("k4", load))
        await _settle()
        waiter = asyncio.create_task(cache.get_or_load("k4", load))
        other = asyncio.create_task(cache.get_or_load("k4", load))
        await _settle()
        waiter.cancel()
        await _settle()
        assert waiter.cancelled()
        assert not leader.done()
        # The request that runs the load goes away: the others load for themselves.
        leader.cancel()
        await _settle()
        load.release.set()
        assert await other == b"loaded"
        assert leader.cancelled()
        assert load.calls == 2

    asyncio.run(scenario())


def test_a_cold_list_page_under_concurrent_requests_is_read_once(api: Api) -> None:
    services = api.client.app.state.services  # type: ignore[attr-defined]
    _, headers = api.user()
    for n in range(3):
        api.item(headers, name=f"item {n}")
    assert api.client.get("/api/v1/users/me", headers=headers).status_code == 200
    statements: list[str] = []
    engine = services.db.engine.sync_engine

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM items" in statement and "OVER" in statement:
            statements.append(statement)

    # The in-process cache looks a key up without any I/O: a request that has called
    # get_or_load for the page has joined its load (or runs it).
    readers = 0
    all_joined = threading.Event()
    get_or_load = services.cache.get_or_load

    async def counted(key: str, load: Any, **options: Any) -> bytes:
        nonlocal readers
        if key.startswith("items:page:"):
            readers += 1
            if readers == 20:
                all_joined.set()
        value: bytes = await get_or_load(key, load, **options)
        return value

    services.cache.get_or_load = counted
    sa.event.listen(engine, "before_cursor_execute", count)
    # Hold the table so that the first request's SELECT waits until all have arrived.
    blocker = sa.create_engine(api.db_url)
    try:
        with blocker.connect() as conn:
            conn.execute(sa.text("LOCK TABLE items IN ACCESS EXCLUSIVE MODE"))
            with ThreadPoolExecutor(20) as pool:
                pages = [
                    pool.submit(api.client.get, "/api/v1/items?limit=100", headers=headers)
                    for _ in range(20)
                ]
                assert all_joined.wait(30), f"{readers} of 20 requests reached the cache"
                conn.rollback()  # releases the lock
                bodies = {page.result().content for page in pages}
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
        services.cache.get_or_load = get_or_load
        blocker.dispose()
    assert len(statements) == 1
    assert len(bodies) == 1
    assert [i["name"] for i in json.loads(bodies.pop())["items"]] == ["item 2", "item 1", "item 0"]


def test_items_of_a_deleted_account_are_gone_from_the_cache_at_once(api: Api) -> None:
    owner, headers = api.user()
    _, admin = api.user(admin=True)
    item = api.item(headers)
    url = f"/api/v1/items/{item['id']}"
    assert api.client.get(url, headers=admin).status_code == 200  # now cached
    assert api.client.delete(f"/api/v1/users/{owner['id']}", headers=admin).status_code == 204
    assert api.sql("SELECT count(*) FROM items WHERE id = :i", i=item["id"])[0][0] == 0
    assert api.client.get(url, headers=admin).status_code == 404
    assert api.client.get("/api/v1/items", headers=admin).json()["total"] == 0


def test_only_a_newer_version_replaces_an_entry(redis_url: str) -> None:
    """Writes and loads reach the cache in any order; the entry holds the newest
    version. A placeholder reserves a version without a value (a miss) until a value
    of that version comes; a deleted row's tombstone is newer than anything."""
    from app.core.cache import PLACEHOLDER, TOMBSTONE

    async def scenario(cache: Cache) -> None:
        await cache.put("v", b"five", version=5)
        await cache.put("v", b"three", version=3)
        assert await cache.get("v") == b"five"
        await cache.put("v", b"six", version=6)
        assert await cache.get("v") == b"six"
        await cache.put("v", PLACEHOLDER, version=7)
        assert await cache.get("v") is None  # reads miss, and load from the database
        stale = CountedLoad(b"read before the write", version=6)
        stale.release.set()
        assert await cache.get_or_load("v", stale) == b"read before the write"
        assert await cache.get("v") is None  # but cannot store what they read
        fresh = CountedLoad(b"seven", version=7)
        fresh.release.set()
        assert await cache.get_or_load("v", fresh) == b"seven"
        assert await cache.get("v") == b"seven"
        await cache.put("v", PLACEHOLDER, version=7)  # no value cannot replace a value
        assert await cache.get("v") == b"seven"
        await cache.put("v", b"gone", version=TOMBSTONE)
        await cache.put("v", b"later", version=10**12)
        assert await cache.get("v") == b"gone"
        await cache.delete("v")
        await cache.close()

    for cache in _caches(redis_url):
        asyncio.run(scenario(cache))


def test_concurrent_versioned_writes_to_redis_keep_the_newest(redis_url: str) -> None:
    """Compare and write are one script on Redis: many clients writing versions in a
    shuffled order leave the highest one, whichever lands last."""
    import random

    async def scenario() -> bytes | None:
        replicas = [RedisCache(redis_url, ttl=30) for _ in range(4)]
        versions = list(range(1, 201))
        random.Random(7).shuffle(versions)
        await asyncio.gather(
            *(
                replicas[n % 4].put("race", str(v).encode(), version=v)
                for n, v in enumerate(versions)
            )
        )
        value = await replicas[0].get("race")
        await replicas[0].delete("race")
        for replica in replicas:
            await replica.close()
        return value

    assert asyncio.run(scenario()) == b"200"
