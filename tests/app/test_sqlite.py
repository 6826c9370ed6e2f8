"""The main flows once more on the embedded SQLite default."""

from __future__ import annotations

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
