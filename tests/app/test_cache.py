from __future__ import annotations

from typing import Any

import redis

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
    assert not store.exists(f"fastship:item:{item['id']}")
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
    stale = {"id": user["id"], "role": "user", "active": True, "ver": 0}
    portal = api.client.portal
    assert portal is not None
    portal.call(services.cache.add, principal_key(uuid.UUID(user["id"])), stale)
    assert api.client.get("/api/v1/users/me", headers=old).status_code == 401


def test_the_memory_cache_lets_go_of_expired_entries_nobody_reads() -> None:
    """Pages cached under a list generation that a write replaced are never read
    again: they must not stay in memory until the entry limit pushes them out."""
    import asyncio

    from app.core.cache import MemoryCache

    async def scenario() -> tuple[int, bytes | None, bytes | None]:
        cache = MemoryCache(ttl=0.2, max_entries=10_000)
        for i in range(500):
            await cache.set(f"items:page:old-generation:{i}", b"x" * 1000)
        await cache.set("kept", b"still fresh")
        await asyncio.sleep(0.3)  # all 501 entries expire
        await cache.set("new", b"page")
        return len(cache._data), await cache.get("new"), await cache.get("kept")

    size, new, kept = asyncio.run(scenario())
    assert new == b"page"
    assert kept is None
    assert size == 1  # only "new": the expired entries went at the next write
