"""Hostile input in every string field: answered with a 4xx in the error shape, never
a 5xx, and what was stored stays intact."""

from __future__ import annotations

from typing import Any

from tests.app.conftest import Api

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
