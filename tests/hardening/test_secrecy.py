"""A full run against a real server, with every log line it writes captured: no
password, token, database password or signing key may appear in any log line, error
body or header, and every response carries the security headers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import jwt

from tests.hardening.server import SIGNING_KEY, sql
from tests.support.postgres import PostgresServer
from tests.support.server import AppServer

DB_PASSWORD = "db-pa55word-" + uuid.uuid4().hex
FIRST_PASSWORD = "first-secret-" + uuid.uuid4().hex[:12]
SECOND_PASSWORD = "second-secret-" + uuid.uuid4().hex[:12]
WRONG_PASSWORD = "wrong-guess-" + uuid.uuid4().hex[:12]
ADMIN_SET_PASSWORD = "admin-set-" + uuid.uuid4().hex[:12]

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def _with_password(url: str, password: str) -> str:
    # The test server trusts loopback connections, so the password is carried along
    # unused: exactly what must never be printed.
    return url.replace("postgres@", f"postgres:{password}@", 1)


def _full_run(
    client: httpx.Client, server: AppServer, pg: PostgresServer
) -> tuple[list[httpx.Response], list[str]]:
    seen: list[httpx.Response] = []

    def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = client.request(method, path, **kwargs)
        seen.append(response)
        return response

    email = f"secret{uuid.uuid4().hex[:8]}@example.com"
    assert (
        call(
            "POST", "/api/v1/users/signup", json={"email": email, "password": FIRST_PASSWORD}
        ).status_code
        == 201
    )
    token = call(
        "POST", "/api/v1/auth/token", data={"username": email, "password": FIRST_PASSWORD}
    ).json()["access_token"]
    tokens = [token]
    auth = {"Authorization": f"Bearer {token}"}
    assert (
        call(
            "POST", "/api/v1/auth/token", data={"username": email, "password": WRONG_PASSWORD}
        ).status_code
        == 401
    )
    too_short = call(
        "POST", "/api/v1/users/signup", json={"email": f"x{email}", "password": "short"}
    )
    assert too_short.status_code == 422

    item = call(
        "POST", "/api/v1/items", json={"name": "thing", "price": "3.00"}, headers=auth
    ).json()
    call("GET", f"/api/v1/items/{item['id']}", headers=auth)
    call("PATCH", f"/api/v1/items/{item['id']}", json={"name": "renamed"}, headers=auth)
    call("GET", "/api/v1/items", params={"q": "ren"}, headers=auth)
    call("DELETE", f"/api/v1/items/{item['id']}", headers=auth)
    call("GET", f"/api/v1/items/{item['id']}", headers=auth)  # 404
    call("POST", "/api/v1/items", json={"name": "", "price": "-1"}, headers=auth)  # 422
    call(
        "POST",
        "/api/v1/items",
        content=b"{bad json",
        headers={**auth, "Content-Type": "application/json"},
    )
    call(
        "POST",
        "/api/v1/items",
        content=b"x" * 1_100_000,
        headers={**auth, "Content-Type": "application/json"},
    )
    call("PUT", "/healthz")  # 405
    call("GET", "/no/such/page")  # 404

    wrong_current = call(
        "POST",
        "/api/v1/users/me/password",
        json={"current_password": WRONG_PASSWORD, "new_password": SECOND_PASSWORD},
        headers=auth,
    )
    assert wrong_current.status_code == 400
    changed = call(
        "POST",
        "/api/v1/users/me/password",
        json={"current_password": FIRST_PASSWORD, "new_password": SECOND_PASSWORD},
        headers=auth,
    )
    assert changed.status_code == 204
    assert call("GET", "/api/v1/users/me", headers=auth).status_code == 401  # revoked token
    forged = jwt.encode({"sub": "x"}, "not-the-key-" + "z" * 30, algorithm="HS256")
    call("GET", "/api/v1/users/me", headers={"Authorization": f"Bearer {forged}"})
    token = call(
        "POST", "/api/v1/auth/token", data={"username": email, "password": SECOND_PASSWORD}
    ).json()["access_token"]
    tokens.append(token)
    auth = {"Authorization": f"Bearer {token}"}

    # Admin resets the password; then the database goes away for a moment.
    admin_email = f"admin{uuid.uuid4().hex[:8]}@example.com"
    call("POST", "/api/v1/users/signup", json={"email": admin_email, "password": FIRST_PASSWORD})
    sql(server.database_url, "UPDATE users SET role = 'admin' WHERE email = :e", e=admin_email)
    admin_token = call(
        "POST", "/api/v1/auth/token", data={"username": admin_email, "password": FIRST_PASSWORD}
    ).json()["access_token"]
    tokens.append(admin_token)
    me = call("GET", "/api/v1/users/me", headers=auth).json()
    call(
        "PATCH",
        f"/api/v1/users/{me['id']}",
        json={"password": ADMIN_SET_PASSWORD},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    pg.stop()
    try:
        assert (
            call(
                "GET", "/api/v1/items", headers={"Authorization": f"Bearer {admin_token}"}
            ).status_code
            == 503
        )
        assert (
            call(
                "POST",
                "/api/v1/auth/token",
                data={"username": email, "password": ADMIN_SET_PASSWORD},
            ).status_code
            == 503
        )
        assert call("GET", "/readyz").status_code == 503
    finally:
        pg.start()
    call("GET", "/metrics")
    call("GET", "/openapi.json")
    return seen, tokens


def test_no_secret_in_logs_bodies_or_headers(
    server_factory: Callable[..., AppServer], pg_database: str, pg_server: PostgresServer
) -> None:
    server = server_factory(_with_password(pg_database, DB_PASSWORD), FASTSHIP_LOG_LEVEL="DEBUG")
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        responses, tokens = _full_run(client, server, pg_server)
    assert server.terminate() == 0
    log = server.log_text()
    lines = [line for line in log.splitlines() if line.strip()]
    assert len(lines) > len(responses), "the server logged less than one line per request"
    assert any('"status": 503' in line for line in lines)

    secrets = {
        "database password": DB_PASSWORD,
        "signing key": SIGNING_KEY,
        "first password": FIRST_PASSWORD,
        "second password": SECOND_PASSWORD,
        "wrong password": WRONG_PASSWORD,
        "admin-set password": ADMIN_SET_PASSWORD,
    }
    for i, token in enumerate(tokens):
        secrets[f"token {i}"] = token
        secrets[f"token {i} signature"] = token.rsplit(".", 1)[1]
    for name, secret in secrets.items():
        assert secret not in log, f"{name} appears in the server's log"
        for response in responses:
            if response.request.url.path == "/api/v1/auth/token" and name.startswith("token"):
                continue  # the login response is where a token is meant to be
            exposed = response.text + json.dumps(dict(response.headers))
            assert secret not in exposed, f"{name} in the answer to {response.request.url.path}"


def test_security_headers_on_every_response(server: AppServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        email = f"hdr{uuid.uuid4().hex[:8]}@example.com"
        client.post("/api/v1/users/signup", json={"email": email, "password": FIRST_PASSWORD})
        token = client.post(
            "/api/v1/auth/token", data={"username": email, "password": FIRST_PASSWORD}
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        item = client.post("/api/v1/items", json={"name": "h", "price": "1"}, headers=auth).json()
        responses = [
            client.get("/healthz"),
            client.get("/readyz"),
            client.get("/metrics"),
            client.get("/openapi.json"),
            client.get("/docs"),
            client.get("/redoc"),
            client.get("/nowhere"),
            client.put("/healthz"),
            client.get("/api/v1/items", headers=auth),
            client.get(f"/api/v1/items/{item['id']}", headers=auth),
            client.get("/api/v1/items"),
            client.delete(f"/api/v1/items/{item['id']}", headers=auth),
            client.post("/api/v1/items", content=b"x" * 1_100_000, headers=auth),
            client.post("/api/v1/items", json={}, headers=auth),
            client.get("/api/v1/items", headers={**auth, "Accept-Encoding": "gzip"}),
        ]
    for response in responses:
        where = f"{response.request.method} {response.request.url.path} ({response.status_code})"
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, f"{name} missing on {where}"
        assert "content-security-policy" in response.headers, where
        assert "strict-transport-security" in response.headers, where
        assert response.headers.get("x-request-id"), where
        assert "server" not in response.headers, f"server header on {where}"
        assert "x-powered-by" not in response.headers, where
        if response.request.url.path.startswith("/api/"):
            assert response.headers.get("cache-control") == "no-store", where
