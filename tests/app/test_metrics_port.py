"""FASTSHIP_METRICS_PORT: /metrics on a port of its own, and no longer on the API port."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.app.test_server import KEY
from tests.support.server import AppServer
from tests.support.waiting import free_port


def test_metrics_on_their_own_port(app_servers: Callable[..., AppServer], tmp_path: Path) -> None:
    metrics_port = free_port()
    server = app_servers(
        {
            "FASTSHIP_SQLITE_PATH": str(tmp_path / "db.sqlite"),
            "FASTSHIP_JWT_SECRET_KEY": KEY,
            "FASTSHIP_METRICS_PORT": str(metrics_port),
        }
    )
    assert httpx.get(server.base_url + "/healthz", timeout=5).status_code == 200
    on_api = httpx.get(server.base_url + "/metrics", timeout=5)
    assert on_api.status_code == 404
    assert on_api.json()["code"] == "not_found"
    own = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
    assert own.status_code == 200
    # The requests served on the API port are counted in the same registry.
    assert 'fastship_http_requests_total{method="GET",route="/healthz",status="200"}' in own.text


def test_metrics_on_the_api_port_by_default(
    app_servers: Callable[..., AppServer], tmp_path: Path
) -> None:
    server = app_servers(
        {"FASTSHIP_SQLITE_PATH": str(tmp_path / "db.sqlite"), "FASTSHIP_JWT_SECRET_KEY": KEY}
    )
    response = httpx.get(server.base_url + "/metrics", timeout=5)
    assert response.status_code == 200
    assert "fastship_http_requests_in_flight" in response.text


def test_metrics_port_equal_to_the_api_port_is_refused(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--port", str(port)],
        env={
            "PATH": "/usr/bin:/bin",
            "FASTSHIP_SQLITE_PATH": str(tmp_path / "db.sqlite"),
            "FASTSHIP_METRICS_PORT": str(port),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "FASTSHIP_METRICS_PORT: is" in proc.stderr
    assert "the port of the API" in proc.stderr
