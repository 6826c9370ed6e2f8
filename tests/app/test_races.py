"""Concurrent writes: cached state ordered by commit, and the last-admin guard.

The cache tests hold back one write's cache store until a later write has finished,
so the older state reaches the cache last, the order a slow event loop or a slow
Redis round trip can produce. The admin test holds the two admins' rows locked from
outside until both demotions are under way, so both run their guard at once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from tests.app.conftest import PASSWORD, Api
from tests.support.waiting import wait_until

# Sessions of the test's database that wait for a lock another session holds.
WAITING_FOR_A_LOCK = (
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


class HeldBackPut:
    """Wraps the app's cache ``put``: the first put whose value contains ``match``
    waits, after its write committed, until ``release`` is set."""

    def __init__(self, api: Api, match: bytes) -> None:
        cache = api.client.app.state.services.cache  # type: ignore[attr-defined]
        self._real = cache.put
        self._match = match
        self.reached = threading.Event()
        self.release = threading.Event()
        cache.put = self._put

    async def _put(self, key: str, value: bytes, **options: Any) -> None:
        if self._match in value and not self.reached.is_set():
            self.reached.set()
            await asyncio.to_thread(self.release.wait, 30)
        await self._real(key, value, **options)


@pytest.fixture(params=["in-process cache", "redis"])
def cached_api(
    request: pytest.FixtureRequest, api_factory: Callable[..., Api]
) -> Callable[..., Api]:
    """Builds the app with the in-process cache, then (second run) with Redis."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        return lambda **settings: api_factory(redis_url=url, **settings)
    return api_factory


def _held_back(api: Api, match: bytes, first: Callable[[], Any], second: Callable[[], Any]) -> Any:
    """Run ``first`` until its cache store for ``match`` is reached, then ``second``
    to the end, then let ``first``'s store go on. Returns ``first``'s response."""
    held = HeldBackPut(api, match)
    with ThreadPoolExecutor(1) as pool:
        slow: Future[Any] = pool.submit(first)
        assert held.reached.wait(30), "the first write never reached the cache"
        second()
        held.release.set()
        return slow.result(30)


def test_the_older_of_two_item_updates_cannot_overwrite_the_newer_in_the_cache(
    cached_api: Callable[..., Api],
) -> None:
    api = cached_api()
    _, headers = api.user()
    item = api.item(headers, name="original")
    url = f"/api/v1/items/{item['id']}"

    def patch(name: str) -> Callable[[], Any]:
        return lambda: api.client.patch(url, json={"name": name}, headers=headers)

    first = _held_back(api, b'"name":"first"', patch("first"), patch("second"))
    assert first.status_code == 200
    assert api.sql("SELECT name FROM items WHERE id = :i", i=item["id"])[0][0] == "second"
    assert api.client.get(url, headers=headers).json()["name"] == "second"


def test_an_update_racing_a_delete_cannot_bring_the_item_back(
    cached_api: Callable[..., Api],
) -> None:
    api = cached_api()
    _, headers = api.user()
    item = api.item(headers, name="original")
    url = f"/api/v1/items/{item['id']}"
    first = _held_back(
        api,
        b'"name":"updated"',
        lambda: api.client.patch(url, json={"name": "updated"}, headers=headers),
        lambda: api.client.delete(url, headers=headers),
    )
    assert first.status_code == 200
    assert api.client.get(url, headers=headers).status_code == 404


def test_an_email_change_racing_a_demotion_cannot_restore_the_admin(
    cached_api: Callable[..., Api],
) -> None:
    # Accounts cached for long, so that the cache (not the database) answers below.
    api = cached_api(principal_cache_ttl_seconds=30)
    _, other_admin = api.user(admin=True)
    me, mine = api.user(admin=True)
    assert api.client.get("/api/v1/users", headers=mine).status_code == 200

    def change_email() -> Any:
        body = {"email": f"new-{me['email']}", "current_password": PASSWORD}
        return api.client.patch("/api/v1/users/me", json=body, headers=mine)

    def demote() -> None:
        demoted = api.client.patch(
            f"/api/v1/users/{me['id']}", json={"role": "user"}, headers=other_admin
        )
        assert demoted.status_code == 200, demoted.text

    changed = _held_back(api, b'"role": "admin"', change_email, demote)
    assert changed.status_code == 200
    fresh = api.login(f"new-{me['email']}")
    # The cache holds the demoted account: the new token is a user's, the old one dead.
    assert api.client.get("/api/v1/users", headers=fresh).status_code == 403
    assert api.client.get("/api/v1/users/me", headers=mine).status_code == 401


def test_a_failed_shared_cache_write_leaves_no_revoked_token_usable(
    api_factory: Callable[..., Api], redis_url: str
) -> None:
    """When Redis does not take the mark of a password change, the change is refused
    (503) and not made: no replica can go on serving the old principal from Redis."""
    store = redis.Redis.from_url(redis_url)
    # Replica A logs in to Redis as a user of its own, whose scripts (the cache's
    # compare-and-set) Redis can then refuse while everything else still works.
    store.execute_command("ACL", "SETUSER", "replica-a", "on", ">a-secret", "~*", "&*", "+@all")
    url_a = redis_url.replace("redis://", "redis://replica-a:a-secret@")
    try:
        replica_a = api_factory(redis_url=url_a, principal_cache_ttl_seconds=30)
        replica_b = api_factory(redis_url=redis_url, principal_cache_ttl_seconds=30)
        user, token = replica_a.user()
        assert replica_b.client.get("/api/v1/users/me", headers=token).status_code == 200
        store.execute_command("ACL", "SETUSER", "replica-a", "-@scripting")
        changed = replica_a.client.post(
            "/api/v1/users/me/password",
            json={"current_password": PASSWORD, "new_password": "another password"},
            headers=token,
        )
        store.execute_command("ACL", "SETUSER", "replica-a", "+@all")
        assert changed.status_code == 503
        assert changed.json()["code"] == "cache_unavailable"
        replica_a.login(user["email"], PASSWORD)  # the old password still works: no change
        # Once Redis takes writes again, a change reaches every replica at once.
        changed = replica_a.client.post(
            "/api/v1/users/me/password",
            json={"current_password": PASSWORD, "new_password": "another password"},
            headers=token,
        )
        assert changed.status_code == 204
        assert replica_b.client.get("/api/v1/users/me", headers=token).status_code == 401
    finally:
        store.execute_command("ACL", "DELUSER", "replica-a")
        store.close()


def test_two_admins_demoting_each_other_at_once_leave_one_admin(api: Api) -> None:
    for _ in range(3):
        api.sql("UPDATE users SET role = 'user' WHERE role = 'admin'")
        first, first_headers = api.user(admin=True)
        second, second_headers = api.user(admin=True)
        blocker = sa.create_engine(api.db_url)
        try:
            with blocker.connect() as conn:
                conn.execute(
                    sa.text("SELECT id FROM users WHERE id IN (:a, :b) FOR UPDATE"),
                    {"a": first["id"], "b": second["id"]},
                )
                with ThreadPoolExecutor(2) as pool:
                    answers = [
                        pool.submit(
                            api.client.patch,
                            f"/api/v1/users/{target['id']}",
                            json={"role": "user"},
                            headers=headers,
                        )
                        for target, headers in ((second, first_headers), (first, second_headers))
                    ]
                    wait_until(
                        lambda: api.sql(WAITING_FOR_A_LOCK)[0][0] >= 2,
                        timeout=30,
                        interval=0.02,
                        what="both demotions to wait for the rows",
                    )
                    conn.rollback()
                    statuses = sorted(answer.result(30).status_code for answer in answers)
        finally:
            blocker.dispose()
        admins = api.sql("SELECT count(*) FROM users WHERE role = 'admin' AND is_active")[0][0]
        assert admins == 1, statuses
        assert statuses[0] == 200, statuses
        assert statuses[1] in (403, 409), statuses


def test_without_redis_a_revocation_reaches_the_other_replicas_within_the_principal_ttl(
    api_factory: Callable[..., Api],
) -> None:
    """The chart's defaults: several replicas, no Redis. Each replica caches an account
    for at most FASTSHIP_PRINCIPAL_CACHE_TTL_SECONDS (1 s), counted from when it read
    the row: a password change on one replica ends older tokens on all of them within
    that time, though each keeps its items cached for FASTSHIP_CACHE_TTL_SECONDS."""
    replica_a = api_factory()
    replica_b = api_factory()
    _, token = replica_a.user()
    for _ in range(3):  # B has the account cached
        assert replica_b.client.get("/api/v1/users/me", headers=token).status_code == 200
    changed = replica_a.client.post(
        "/api/v1/users/me/password",
        json={"current_password": PASSWORD, "new_password": "another password"},
        headers=token,
    )
    assert changed.status_code == 204
    assert replica_a.client.get("/api/v1/users/me", headers=token).status_code == 401
    # Within the TTL of B's entry, read before the change (and a margin for a busy machine).
    wait_until(
        lambda: replica_b.client.get("/api/v1/users/me", headers=token).status_code == 401,
        timeout=1.5,
        interval=0.05,
        what="replica B to refuse the older token",
    )
