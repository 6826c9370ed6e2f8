"""The real server process: uvicorn started by `python -m app serve`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.conftest import FAST_HASHING_ENV
from tests.support.server import AppServer
from tests.support.waiting import wait_until

KEY = "server-test-signing-key-" + "k" * 32


def server_env(**env: str) -> dict[str, str]:
    """The settings of a test server: the test environment's cheap argon2 cost (refused
    elsewhere) and a signing key, then ``env``."""
    test = env.get("FASTSHIP_ENVIRONMENT", "test") == "test"
    return {
        "FASTSHIP_ENVIRONMENT": "test",
        "FASTSHIP_JWT_SECRET_KEY": KEY,
        **(FAST_HASHING_ENV if test else {}),
        **env,
    }


@pytest.fixture
def server_factory(app_servers: Callable[..., AppServer]) -> Callable[..., AppServer]:
    return lambda **env: app_servers(server_env(**env))


def test_sigterm_lets_in_flight_requests_finish(server_factory: Any, pg_database: str) -> None:
    # An expensive argon2 profile makes a login take about a second: a real slow request.
    server = server_factory(
        FASTSHIP_DATABASE_URL=pg_database,
        FASTSHIP_PASSWORD_HASH_MEMORY_KIB="65536",
        FASTSHIP_PASSWORD_HASH_TIME_COST="8",
        FASTSHIP_PASSWORD_HASH_PARALLELISM="1",
        FASTSHIP_SHUTDOWN_TIMEOUT_SECONDS="20",
    )
    outcome: dict[str, Any] = {}

    def slow_login() -> None:
        try:
            response = httpx.post(
                server.base_url + "/api/v1/auth/token",
                data={"username": "nobody@example.com", "password": "whatever1"},
                timeout=30,
            )
            outcome["status"] = response.status_code
        except httpx.TransportError as exc:
            outcome["error"] = repr(exc)

    thread = threading.Thread(target=slow_login)
    thread.start()
    wait_until(server.requests_in_flight, timeout=10, interval=0.01, what="the login in flight")
    assert server.terminate() == 0
    thread.join(30)
    assert outcome.get("status") == 401, outcome
    with pytest.raises(httpx.TransportError):
        httpx.get(server.base_url + "/healthz", timeout=2)
    # The login ended after the shutdown began: it was in flight, and it was let finish.
    messages = [(r.get("msg"), r.get("path"), r.get("status")) for r in server.log_records()]
    shutdown = messages.index(("Shutting down", None, None))
    assert ("request", "/api/v1/auth/token", 401) in messages[shutdown:], messages


def test_serve_logs_json_lines_with_request_ids(server_factory: Any, pg_database: str) -> None:
    server = server_factory(FASTSHIP_DATABASE_URL=pg_database)
    httpx.get(server.base_url + "/healthz", headers={"X-Request-ID": "json-line-check"})
    assert server.terminate() == 0
    lines = server.log_records()
    assert any(line.get("request_id") == "json-line-check" for line in lines)
    assert all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)


def test_embedded_sqlite_first_start_creates_an_admin(server_factory: Any, tmp_path: Path) -> None:
    db = tmp_path / "data" / "fastship.db"
    server = server_factory(FASTSHIP_SQLITE_PATH=str(db), FASTSHIP_ENVIRONMENT="development")
    password_file = db.parent / "admin-password.txt"
    assert password_file.stat().st_mode & 0o777 == 0o600
    password = password_file.read_text().strip()
    token = httpx.post(
        server.base_url + "/api/v1/auth/token",
        data={"username": "admin@example.com", "password": password},
    )
    assert token.status_code == 200
    assert password not in server.log_text()
    assert "admin-password.txt" in server.log_text()
