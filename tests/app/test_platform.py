"""Probes, middleware, errors, metrics and logs."""

from __future__ import annotations

import gzip
import uuid
from typing import Any

from tests.app.conftest import Api, LogLines
from tests.support.postgres import PostgresServer


def test_healthz_and_readyz(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["schema_revision"] == ready.json()["expected_revision"]


def test_readyz_is_503_until_the_schema_is_migrated(
    api_factory: Any, pg_empty_database: str
) -> None:
    api = api_factory(db_url=pg_empty_database)
    response = api.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["code"] == "schema_not_ready"
    assert "run migrations" in response.json()["message"]
    assert api.client.get("/healthz").status_code == 200


def test_readyz_accepts_a_newer_schema(api: Api) -> None:
    # After a rollback the previous release runs on a schema it does not know.
    api.sql("UPDATE alembic_version SET version_num = 'from_a_later_release'")
    assert api.client.get("/readyz").status_code == 200


def test_database_outage_gives_503_and_recovers_without_restart(
    api: Api, pg_server: PostgresServer
) -> None:
    _, headers = api.user()
    item = api.item(headers)
    pg_server.stop()
    try:
        ready = api.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["code"] == "database_unavailable"
        assert api.client.get("/healthz").status_code == 200
        listed = api.client.get("/api/v1/items", headers=headers)
        assert listed.status_code == 503
        assert listed.json()["code"] == "database_unavailable"
        assert listed.headers["retry-after"] == "5"
        assert listed.json()["request_id"] == listed.headers["x-request-id"]
    finally:
        pg_server.start()
    assert api.client.get("/readyz").status_code == 200
    again = api.client.get(f"/api/v1/items/{item['id']}", headers=headers)
    assert again.status_code == 200


def test_request_id_is_taken_echoed_and_logged(api: Api, logs: LogLines) -> None:
    given = api.client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    generated = api.client.get("/healthz")
    assert len(generated.headers["x-request-id"]) == 32
    hostile = api.client.get("/healthz", headers={"X-Request-ID": 'a"b} {evil'})
    assert hostile.headers["x-request-id"] != 'a"b} {evil'
    access = logs.matching(msg="request", request_id="abc-123")
    assert len(access) == 1
    assert access[0]["route"] == "/healthz"
    assert access[0]["status"] == 200
    assert access[0]["method"] == "GET"


def test_every_error_has_the_same_shape(api: Api) -> None:
    _, headers = api.user()
    responses = [
        api.client.get("/nope"),
        api.client.put("/healthz"),
        api.client.get("/api/v1/items", headers=headers, params={"limit": "x"}),
        api.client.post(
            "/api/v1/items",
            content=b"{not json",
            headers={**headers, "Content-Type": "application/json"},
        ),
        api.client.get(f"/api/v1/items/{uuid.uuid4()}", headers=headers),
        api.client.get("/api/v1/users", headers=headers),
    ]
    assert [r.status_code for r in responses] == [404, 405, 422, 422, 404, 403]
    for response in responses:
        body = response.json()
        assert set(body) == {"code", "message", "details", "request_id"}
        assert body["request_id"] == response.headers["x-request-id"]
        assert "Traceback" not in response.text


def test_body_size_limit(api_factory: Any) -> None:
    api = api_factory(max_request_body_bytes=2048)
    _, headers = api.user()
    big = {"name": "x", "price": "1", "description": "d" * 4000}
    declared = api.client.post("/api/v1/items", json=big, headers=headers)
    assert declared.status_code == 413
    assert declared.json()["code"] == "payload_too_large"

    def chunks() -> Any:  # no Content-Length: the limit is enforced while reading
        yield b'{"name": "x", "price": "1", "description": "'
        for _ in range(10):
            yield b"d" * 500
        yield b'"}'

    streamed = api.client.post(
        "/api/v1/items", content=chunks(), headers={**headers, "Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert streamed.json()["code"] == "payload_too_large"
    assert api.client.get("/api/v1/items", headers=headers).json()["total"] == 0


def test_large_responses_are_gzipped(api: Api) -> None:
    _, headers = api.user()
    for i in range(20):
        api.item(headers, name=f"item number {i}", description="words " * 20)
    response = api.client.get("/api/v1/items", headers={**headers, "Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert int(response.headers["content-length"]) < len(response.content) / 2
    assert response.json()["total"] == 20
    # A client that does not accept gzip gets the same document, uncompressed.
    plain = api.client.get("/api/v1/items", headers={**headers, "Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert int(plain.headers["content-length"]) == len(plain.content)
    assert plain.content == gzip.decompress(_raw_body(api, headers))
    # Either way shared caches are told that the body depends on Accept-Encoding.
    assert response.headers["vary"] == plain.headers["vary"] == "Accept-Encoding"
    small = api.client.get("/healthz", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers


def _raw_body(api: Api, headers: dict[str, str]) -> bytes:
    """The compressed bytes as sent, which httpx would otherwise decode."""
    with api.client.stream(
        "GET", "/api/v1/items", headers={**headers, "Accept-Encoding": "gzip"}
    ) as response:
        assert response.headers["content-encoding"] == "gzip"
        return b"".join(response.iter_raw())


def test_cors_follows_settings(api_factory: Any) -> None:
    api = api_factory(cors_origins="https://app.example.com")
    allowed = api.client.options(
        "/api/v1/items",
        headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"},
    )
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    denied = api.client.get("/healthz", headers={"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in denied.headers


def test_security_headers(api: Api) -> None:
    response = api.client.get("/api/v1/items")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    docs = api.client.get("/docs")
    assert docs.status_code == 200
    assert "cdn.jsdelivr.net" in docs.headers["content-security-policy"]


def test_security_headers_behind_a_proxy_prefix(api_factory: Any) -> None:
    """With FASTSHIP_ROOT_PATH the ASGI path carries the prefix: the headers depend on
    the path without it, as routing and the metrics' labels do."""
    api = api_factory(root_path="/svc")
    response = api.client.get("/svc/api/v1/items")
    assert response.status_code == 401
    assert response.headers["cache-control"] == "no-store"
    docs = api.client.get("/svc/docs")
    assert docs.status_code == 200
    assert "cdn.jsdelivr.net" in docs.headers["content-security-policy"]


def test_log_level_is_accepted_in_any_case() -> None:
    from app.core.config import Settings

    for given in ("warning", "Warning", " WARNING "):
        assert Settings.model_validate({"log_level": given}).log_level == "WARNING"


def test_the_default_page_size_is_a_setting(api_factory: Any) -> None:
    api = api_factory(default_page_size=2)
    _, headers = api.user()
    _, admin = api.user(admin=True)
    for n in range(3):
        api.item(headers, name=f"item {n}")
    page = api.client.get("/api/v1/items", headers=headers).json()
    assert (page["limit"], len(page["items"]), page["total"]) == (2, 2, 3)
    assert api.client.get("/api/v1/items?limit=3", headers=headers).json()["limit"] == 3
    users = api.client.get("/api/v1/users", headers=admin).json()
    assert (users["limit"], len(users["items"])) == (2, 2)


def test_metrics(api: Api) -> None:
    _, headers = api.user()
    item = api.item(headers)
    api.client.get(f"/api/v1/items/{item['id']}", headers=headers)
    api.client.get("/no/such/path")
    api.client.get("/docs")
    api.client.get("/openapi.json")
    text = api.client.get("/metrics").text
    assert (
        'fastship_http_requests_total{method="GET",route="/api/v1/items/{item_id}",status="200"}'
        in text
    )
    assert 'fastship_http_requests_total{method="GET",route="/no/such/path"' not in text
    assert 'route="<unmatched>",status="404"' in text
    # The docs pages are Starlette's plain routes: labelled by their path all the same.
    assert 'route="/docs",status="200"' in text
    assert 'route="/openapi.json",status="200"' in text
    assert "fastship_http_request_duration_seconds_bucket" in text
    assert "fastship_db_pool_connections_in_use" in text


def test_openapi_documents_errors_and_examples(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    login = spec["paths"]["/api/v1/auth/token"]["post"]
    assert {"401", "429"} <= set(login["responses"])
    assert "ErrorBody" in spec["components"]["schemas"]
    assert spec["components"]["schemas"]["ItemCreate"]["examples"]
    assert api.client.get("/redoc").status_code == 200


def test_docs_can_be_turned_off(api_factory: Any) -> None:
    api = api_factory(docs_enabled=False)
    assert api.client.get("/docs").status_code == 404
    assert api.client.get("/openapi.json").status_code == 404


def test_uvicorn_lines_are_logged_without_terminal_colours() -> None:
    import json
    import logging

    from app.core.logging import JsonFormatter

    record = logging.makeLogRecord(
        {
            "name": "uvicorn.error",
            "levelname": "INFO",
            "msg": "Started server process [%d]",
            "args": (42,),
            "color_message": "Started server process [\x1b[36m%d\x1b[0m]",
        }
    )
    line = JsonFormatter().format(record)
    assert "\\u001b" not in line
    assert json.loads(line)["msg"] == "Started server process [42]"
