"""The real server process: uvicorn started by `python -m app serve`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.conftest import FAST_HASHING_ENV
from tests.support.waiting import free_port

KEY = "server-test-signing-key-" + "k" * 32


class Server:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._log = log.open("w")
        clean = {k: v for k, v in os.environ.items() if not k.startswith("FASTSHIP_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(self.port)],
            env={**clean, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.log_path = log

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log_path.read_text()}")
            try:
                if httpx.get(self.base + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("server not ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def start(**env: str) -> Server:
        server = Server(
            {
                "FASTSHIP_ENVIRONMENT": "test",
                "FASTSHIP_JWT_SECRET_KEY": KEY,
                # the cheap argon2 cost is refused outside the test environment
                **(FAST_HASHING_ENV if env.get("FASTSHIP_ENVIRONMENT", "test") == "test" else {}),
                **env,
            },
            tmp_path / f"server{len(servers)}.log",
        )
        servers.append(server)
        server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()


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
        started = time.monotonic()
        try:
            response = httpx.post(
                server.base + "/api/v1/auth/token",
                data={"username": "nobody@example.com", "password": "whatever1"},
                timeout=30,
            )
            outcome["status"] = response.status_code
        except httpx.TransportError as exc:
            outcome["error"] = repr(exc)
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=slow_login)
    thread.start()
    time.sleep(0.3)
    server.proc.send_signal(signal.SIGTERM)
    thread.join(30)
    assert outcome.get("status") == 401, outcome
    assert outcome["seconds"] > 0.3
    assert server.proc.wait(30) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(server.base + "/healthz", timeout=2)
    log = server.log_path.read_text()
    assert '"msg": "request"' in log
    assert '"status": 401' in log


def test_serve_logs_json_lines_with_request_ids(server_factory: Any, pg_database: str) -> None:
    import json

    server = server_factory(FASTSHIP_DATABASE_URL=pg_database)
    httpx.get(server.base + "/healthz", headers={"X-Request-ID": "json-line-check"})
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0
    lines = [
        json.loads(line)
        for line in server.log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    assert any(line.get("request_id") == "json-line-check" for line in lines)
    assert all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)


def test_embedded_sqlite_first_start_creates_an_admin(server_factory: Any, tmp_path: Path) -> None:
    db = tmp_path / "data" / "fastship.db"
    server = server_factory(FASTSHIP_SQLITE_PATH=str(db), FASTSHIP_ENVIRONMENT="development")
    password_file = db.parent / "admin-password.txt"
    assert password_file.stat().st_mode & 0o777 == 0o600
    password = password_file.read_text().strip()
    token = httpx.post(
        server.base + "/api/v1/auth/token",
        data={"username": "admin@example.com", "password": password},
    )
    assert token.status_code == 200
    assert password not in server.log_path.read_text()
    assert "admin-password.txt" in server.log_path.read_text()
