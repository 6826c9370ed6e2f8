"""The main flows once more on the embedded SQLite default."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.app.conftest import Api


def test_main_flows_on_sqlite(sqlite_api: Api) -> None:
    api = sqlite_api
    assert api.client.get("/readyz").status_code == 200
    user, headers = api.user()
    other_user, other = api.user()
    item = api.item(headers, name="Lamp", price="19.99", tags=["home"])
    assert api.client.get(f"/api/v1/items/{item['id']}", headers=headers).json()["name"] == "Lamp"
    assert api.client.get(f"/api/v1/items/{item['id']}", headers=other).status_code == 404
    patched = api.client.patch(f"/api/v1/items/{item['id']}", json={"price": "5"}, headers=headers)
    assert patched.json()["price"] == "5.00"
    api.item(headers, name="Desk", price="120")
    page = api.client.get("/api/v1/items?sort=price&q=l", headers=headers).json()
    assert page["total"] == 1
    assert api.client.delete(f"/api/v1/items/{item['id']}", headers=headers).status_code == 204
    assert api.client.get("/api/v1/items", headers=headers).json()["total"] == 1
    # The first start created the bootstrap admin, who sees everyone's items.
    assert api.sql("SELECT email, role FROM users WHERE role = 'admin'") == [
        ("admin@example.com", "admin")
    ]
    _, admin = api.user(admin=True)
    assert api.client.get("/api/v1/items", headers=admin).json()["total"] == 1
    assert user["id"] != other_user["id"]


def test_lockout_on_sqlite(sqlite_api: Api) -> None:
    api = sqlite_api
    email = api.signup()["email"]
    for _ in range(5):
        api.client.post("/api/v1/auth/token", data={"username": email, "password": "wrong!!!"})
    locked = api.client.post("/api/v1/auth/token", data={"username": email, "password": "x" * 8})
    assert locked.status_code == 429


_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _timestamps(body: Any) -> list[str]:
    if isinstance(body, dict):
        found = [v for k, v in body.items() if k.endswith("_at")]
        return found + [t for v in body.values() for t in _timestamps(v)]
    if isinstance(body, list):
        return [t for v in body for t in _timestamps(v)]
    return []


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_every_timestamp_carries_its_offset(backend: str, sqlite_api: Api, api: Api) -> None:
    """The documented `date-time` format is RFC 3339, offset included, on both
    backends (SQLite hands timestamps back without one)."""
    api = sqlite_api if backend == "sqlite" else api
    user, headers = api.user()
    _, admin = api.user(admin=True)
    item = api.item(headers)
    url = f"/api/v1/items/{item['id']}"
    bodies = [
        user,
        item,
        api.client.get(url, headers=headers).json(),
        api.client.patch(url, json={"name": "renamed"}, headers=headers).json(),
        api.client.get("/api/v1/items", headers=headers).json(),
        api.client.get("/api/v1/users/me", headers=headers).json(),
        api.client.patch("/api/v1/users/me", json={"full_name": "N"}, headers=headers).json(),
        api.client.get("/api/v1/users", headers=admin).json(),
        api.client.get(f"/api/v1/users/{user['id']}", headers=admin).json(),
        api.client.patch(
            f"/api/v1/users/{user['id']}", json={"full_name": "M"}, headers=admin
        ).json(),
    ]
    stamps = [stamp for body in bodies for stamp in _timestamps(body)]
    assert len(stamps) >= 20
    assert [s for s in stamps if not _RFC3339.match(s)] == []
