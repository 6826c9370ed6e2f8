"""Hostile input in every string field: answered with a 4xx in the error shape, never
a 5xx, and what was stored stays intact."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import quote

from tests.app.conftest import PASSWORD, Api

ERROR_KEYS = {"code", "message", "details", "request_id"}


def test_undecodable_bodies_get_a_documented_400(api: Api) -> None:
    """Bytes that are not UTF-8 cannot be parsed as JSON or as a form: FastAPI answers
    400, so every operation with a body must document 400 (schemathesis found it)."""
    _, headers = api.user()
    item = api.item(headers)
    me = api.client.get("/api/v1/users/me", headers=headers).json()
    spec = api.client.get("/openapi.json").json()
    operations = [
        (method, template, operation)
        for template, methods in spec["paths"].items()
        for method, operation in methods.items()
        if "requestBody" in operation
    ]
    assert len(operations) == 7
    for method, template, operation in operations:
        assert "400" in operation["responses"], f"{method} {template} does not document 400"
        media = next(iter(operation["requestBody"]["content"]))
        path = template.replace("{item_id}", item["id"]).replace("{user_id}", me["id"])
        response = api.client.request(
            method, path, content=b"\x80\xc3(", headers={**headers, "Content-Type": media}
        )
        # A form parser may read the bytes as latin-1 and find fields missing instead.
        expected = 400 if media == "application/json" else 422
        assert response.status_code == expected, (method, path, response.text)
        body: dict[str, Any] = response.json()
        assert set(body) == ERROR_KEYS


HOSTILE = {
    "sql quote": "'; DROP TABLE items; --",
    "sql or": '" OR "1"="1',
    "sql comment": "1' OR '1'='1' /*",
    "like wildcards": "%_\\%",
    "dollar quote": "$$; SELECT pg_sleep(10); $$",
    "unicode": "\u00dcn\u00efc\u00f6d\u00e9 \u2713 \U0001d518\U0001d52b \U0001f469\u200d\U0001f467",
    "bidi override": "\u202eevil\u202c",
    "zero width": "a\u200b\u200d\ufeffb",
    "case folding": "\u01c5 \u00df \ufb01 \u0130",
    "last code point": "\U0010ffff",
    "null byte": "a\x00b",
    "escape sequence": "\x1b[31mred",
    "lone surrogate": "x\udfff",
    "long": "L" * 6000,
}
# What may never be stored: Postgres cannot hold NUL, and a lone surrogate is no
# character; C0 controls are refused by the API.
REFUSED = {"null byte", "escape sequence", "lone surrogate"}


def _pct(value: str) -> str:
    """Percent-encoded UTF-8, lone surrogates included, as a raw client sends them."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def _form(api: Api, username: str, password: str) -> Any:
    body = f"username={_pct(username)}&password={_pct(password)}"
    return api.client.post(
        "/api/v1/auth/token",
        content=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


def _send(api: Api, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    # json.dumps escapes what it must (NUL, lone surrogates), as a hostile client would.
    return api.client.request(
        method,
        path,
        content=json.dumps(body).encode(),
        headers={**headers, "Content-Type": "application/json"},
    )


def _assert_refused_or_stored(response: Any, label: str, accepted: int) -> bool:
    assert response.status_code < 500, (label, response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert set(response.json()) == ERROR_KEYS, label
        assert "Traceback" not in response.text
        return False
    assert response.status_code == accepted, (label, response.text[:300])
    return True


def test_hostile_strings_in_item_fields(api: Api) -> None:
    _, headers = api.user()
    for label, value in HOSTILE.items():
        for field in ("name", "description", "tag"):
            body: dict[str, Any] = {"name": "plain", "price": "1.00"}
            if field == "tag":
                body["tags"] = [value]
            else:
                body[field] = value
            created = _send(api, "POST", "/api/v1/items", body, headers)
            stored = _assert_refused_or_stored(created, f"create {field} {label}", 201)
            fits = len(value) <= {"name": 200, "description": 5000, "tag": 32}[field]
            assert stored == (label not in REFUSED and fits), (field, label, created.text[:200])
            if stored:
                read = api.client.get(f"/api/v1/items/{created.json()['id']}", headers=headers)
                got = read.json()["tags"][0] if field == "tag" else read.json()[field]
                expected = value.strip() if field in ("name", "tag") else value
                assert got == expected, (field, label)

            item = api.item(headers, name="before", description="kept")
            change = {"tags": [value]} if field == "tag" else {field: value}
            patched = _send(api, "PATCH", f"/api/v1/items/{item['id']}", change, headers)
            if not _assert_refused_or_stored(patched, f"patch {field} {label}", 200):
                unchanged = api.client.get(f"/api/v1/items/{item['id']}", headers=headers)
                assert unchanged.json() == item, f"a refused PATCH changed the item ({label})"


def test_hostile_strings_in_queries_and_paths(api: Api) -> None:
    _, headers = api.user()
    mine = api.item(headers, name="needle")
    for label, value in HOSTILE.items():
        listed = api.client.get(f"/api/v1/items?q={_pct(value)}", headers=headers)
        if _assert_refused_or_stored(listed, f"q {label}", 200):
            # Wildcards and quotes are matched literally: nothing here contains them.
            assert listed.json()["total"] == 0, label
        for param in ("sort", "owner_id", "limit"):
            odd = api.client.get(f"/api/v1/items?{param}={_pct(value)}", headers=headers)
            assert odd.status_code == 422, (param, label, odd.text[:200])
        by_id = api.client.get(f"/api/v1/items/{_pct(value)}", headers=headers)
        assert by_id.status_code in (404, 422), (label, by_id.status_code)
    assert api.client.get("/api/v1/items", params={"q": "needle"}, headers=headers).json()[
        "items"
    ] == [mine]


def test_hostile_strings_in_account_fields(api: Api) -> None:
    """Passwords are taken as given (any 8 to 128 characters that are text) and must
    work for login exactly as given; names and emails are refused or stored intact."""
    for label, value in HOSTILE.items():
        email = f"acct{uuid.uuid4().hex[:10]}@example.com"
        password = f"pw {value}"[:128]
        signup = _send(
            api, "POST", "/api/v1/users/signup", {"email": email, "password": password}, {}
        )
        if _assert_refused_or_stored(signup, f"signup password {label}", 201):
            assert label not in ("lone surrogate",), label
            assert (
                api.client.post(
                    "/api/v1/auth/token", data={"username": email, "password": password}
                ).status_code
                == 200
            ), label
            wrong = api.client.post(
                "/api/v1/auth/token", data={"username": email, "password": password + "x"}
            )
            assert wrong.status_code == 401, label

        bad_email = _send(
            api, "POST", "/api/v1/users/signup", {"email": value, "password": PASSWORD}, {}
        )
        assert bad_email.status_code == 422, (label, bad_email.text[:200])
        login = _form(api, value, value)
        assert login.status_code in (401, 422), (label, login.text[:200])

    user, headers = api.user()
    for label, value in HOSTILE.items():
        named = _send(api, "PATCH", "/api/v1/users/me", {"full_name": value}, headers)
        if _assert_refused_or_stored(named, f"full_name {label}", 200):
            me = api.client.get("/api/v1/users/me", headers=headers).json()
            assert me["full_name"] == value.strip(), label
        moved = _send(api, "PATCH", "/api/v1/users/me", {"email": value}, headers)
        assert moved.status_code == 422, (label, moved.text[:200])
        change = _send(
            api,
            "POST",
            "/api/v1/users/me/password",
            {"current_password": value[:128] or "x", "new_password": "whatever it is"},
            headers,
        )
        assert change.status_code in (400, 422), (label, change.text[:200])
    assert api.client.get("/api/v1/users/me", headers=headers).json()["email"] == user["email"]


def test_every_body_over_the_limit_is_refused_with_413(api: Api) -> None:
    _, headers = api.user()
    spec = api.client.get("/openapi.json").json()
    item = api.item(headers)
    oversized = b"x" * (1_048_576 + 1)
    for template, methods in spec["paths"].items():
        for method, operation in methods.items():
            if "requestBody" not in operation:
                continue
            media = next(iter(operation["requestBody"]["content"]))
            path = template.replace("{item_id}", item["id"]).replace("{user_id}", str(uuid.uuid4()))
            response = api.client.request(
                method, path, content=oversized, headers={**headers, "Content-Type": media}
            )
            assert response.status_code == 413, (method, template, response.status_code)
            assert response.json()["code"] == "payload_too_large"


def test_deeply_nested_json_is_refused_quickly(api: Api) -> None:
    _, headers = api.user()
    bodies = {
        "arrays": b"[" * 200_000 + b"]" * 200_000,
        "objects": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        "inside a field": b'{"name": "x", "price": "1", "tags": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}",
    }
    for label, body in bodies.items():
        started = time.perf_counter()
        response = api.client.post(
            "/api/v1/items", content=body, headers={**headers, "Content-Type": "application/json"}
        )
        elapsed = time.perf_counter() - started
        assert 400 <= response.status_code < 500, (label, response.status_code)
        assert set(response.json()) == ERROR_KEYS
        assert elapsed < 2.0, f"{label}: {elapsed:.2f}s"
    assert api.client.get("/api/v1/items", headers=headers).json()["total"] == 0
