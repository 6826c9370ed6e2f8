from __future__ import annotations

from typing import Any

from tests.app.conftest import PASSWORD, Api


def test_signup_creates_a_user_with_the_user_role(api: Api) -> None:
    body = api.signup(email="Grace@Example.com", full_name="Grace Hopper")
    assert body["email"] == "grace@example.com"
    assert body["role"] == "user"
    assert body["is_active"] is True
    assert "hashed_password" not in body
    assert "password" not in body
    stored = api.sql("SELECT hashed_password FROM users WHERE id = :i", i=body["id"])[0][0]
    assert stored.startswith("$argon2id$")


def test_signup_rejects_duplicates_and_bad_input(api: Api) -> None:
    api.signup(email="dup@example.com")
    again = api.client.post(
        "/api/v1/users/signup", json={"email": "DUP@example.com", "password": PASSWORD}
    )
    assert again.status_code == 409
    assert again.json()["code"] == "email_taken"
    bad = api.client.post(
        "/api/v1/users/signup", json={"email": "not-an-email", "password": "s3cr3t", "x": 1}
    )
    assert bad.status_code == 422
    fields = {d["field"] for d in bad.json()["details"]}
    assert fields == {"body.email", "body.password", "body.x"}
    assert "s3cr3t" not in bad.text  # input, which may be a password, is never echoed


def test_signup_can_be_turned_off(api_factory: Any) -> None:
    api = api_factory(signup_enabled=False)
    response = api.client.post(
        "/api/v1/users/signup", json={"email": "a@example.com", "password": PASSWORD}
    )
    assert response.status_code == 403
    assert response.json()["code"] == "signup_disabled"


def test_update_me(api: Api) -> None:
    api.signup(email="taken@example.com")
    _user, headers = api.user()
    renamed = api.client.patch("/api/v1/users/me", json={"full_name": "New"}, headers=headers)
    assert renamed.status_code == 200
    assert renamed.json()["full_name"] == "New"
    clash = api.client.patch(
        "/api/v1/users/me",
        json={"email": "taken@example.com", "current_password": PASSWORD},
        headers=headers,
    )
    assert clash.status_code == 409
    escalate = api.client.patch("/api/v1/users/me", json={"role": "admin"}, headers=headers)
    assert escalate.status_code == 422
    assert api.client.get("/api/v1/users/me", headers=headers).json()["role"] == "user"


def test_changing_ones_email_needs_the_password_and_ends_older_tokens(api: Api) -> None:
    user, headers = api.user()
    unconfirmed = api.client.patch(
        "/api/v1/users/me", json={"email": "new@example.com"}, headers=headers
    )
    assert unconfirmed.status_code == 400
    assert unconfirmed.json()["code"] == "password_required"
    wrong = api.client.patch(
        "/api/v1/users/me",
        json={"email": "new@example.com", "current_password": "not the password"},
        headers=headers,
    )
    assert wrong.status_code == 400
    assert wrong.json()["code"] == "wrong_password"
    assert api.client.get("/api/v1/users/me", headers=headers).json()["email"] == user["email"]
    changed = api.client.patch(
        "/api/v1/users/me",
        json={"email": "new@example.com", "current_password": PASSWORD},
        headers=headers,
    )
    assert changed.status_code == 200
    assert changed.json()["email"] == "new@example.com"
    assert api.client.get("/api/v1/users/me", headers=headers).status_code == 401
    fresh = api.login("new@example.com")
    assert api.client.get("/api/v1/users/me", headers=fresh).json()["email"] == "new@example.com"
    # A name alone needs no password and keeps the session.
    renamed = api.client.patch("/api/v1/users/me", json={"full_name": "Renamed"}, headers=fresh)
    assert renamed.status_code == 200
    assert api.client.get("/api/v1/users/me", headers=fresh).status_code == 200


def test_change_password_needs_the_current_one(api: Api) -> None:
    _, headers = api.user()
    wrong = api.client.post(
        "/api/v1/users/me/password",
        json={"current_password": "nope nope", "new_password": "whatever123"},
        headers=headers,
    )
    assert wrong.status_code == 400
    assert wrong.json()["code"] == "wrong_password"


def test_user_management_is_admin_only(api: Api) -> None:
    other = api.signup()
    _, headers = api.user()
    for method, path in [
        ("GET", "/api/v1/users"),
        ("GET", f"/api/v1/users/{other['id']}"),
        ("PATCH", f"/api/v1/users/{other['id']}"),
        ("DELETE", f"/api/v1/users/{other['id']}"),
    ]:
        response = api.client.request(method, path, headers=headers, json={})
        assert response.status_code == 403, (method, path)
        assert response.json()["code"] == "forbidden"


def test_admin_manages_users(api: Api) -> None:
    _admin, headers = api.user(admin=True)
    target = api.signup()
    listed = api.client.get("/api/v1/users?limit=1&offset=0", headers=headers)
    assert listed.status_code == 200
    assert listed.json()["total"] == 2
    assert len(listed.json()["items"]) == 1
    got = api.client.get(f"/api/v1/users/{target['id']}", headers=headers)
    assert got.json()["email"] == target["email"]
    promoted = api.client.patch(
        f"/api/v1/users/{target['id']}", json={"role": "admin", "full_name": "T"}, headers=headers
    )
    assert promoted.json()["role"] == "admin"
    missing = api.client.get("/api/v1/users/00000000-0000-0000-0000-000000000000", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    bad_id = api.client.get("/api/v1/users/not-a-uuid", headers=headers)
    assert bad_id.status_code == 422


def test_the_last_admin_is_protected(api: Api) -> None:
    admin, headers = api.user(admin=True)
    demote = api.client.patch(
        f"/api/v1/users/{admin['id']}", json={"role": "user"}, headers=headers
    )
    assert demote.status_code == 409
    assert demote.json()["code"] == "last_admin"
    delete_self = api.client.delete(f"/api/v1/users/{admin['id']}", headers=headers)
    assert delete_self.status_code == 409


def test_deleting_a_user_deletes_their_items(api: Api) -> None:
    _, admin = api.user(admin=True)
    user, headers = api.user()
    api.item(headers)
    deleted = api.client.delete(f"/api/v1/users/{user['id']}", headers=admin)
    assert deleted.status_code == 204
    assert api.sql("SELECT count(*) FROM items")[0][0] == 0
    assert api.client.get("/api/v1/users/me", headers=headers).status_code == 401


def test_admin_can_reset_a_password(api: Api) -> None:
    _, admin = api.user(admin=True)
    user = api.signup()
    reset = api.client.patch(
        f"/api/v1/users/{user['id']}", json={"password": "reset by admin"}, headers=admin
    )
    assert reset.status_code == 200
    api.login(user["email"], "reset by admin")
