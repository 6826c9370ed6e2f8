"""The service as production runs it: `python -m app serve` in a subprocess on a free
loopback port, for every test and benchmark that needs the real server process.

The process inherits the environment without its FASTSHIP_* variables, plus the
settings it is given. Everything it writes (stdout and stderr) goes to a log file, so a
test can read every log line and wait for one. Stopping sends SIGTERM, as Kubernetes
does, waits a bounded time and kills the process after it.

Fixture:
    app_servers   function: ``start(env, **options)`` starts a server and waits until
                  it is ready; every server it started is stopped after the test
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.kube import REPO_ROOT
from tests.support.waiting import free_port, wait_until


class AppServer:
    """One `python -m app serve` process. ``env``: its FASTSHIP_* settings."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        *,
        port: int | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.port = port or free_port()
        self.args = list(args)
        self.process: subprocess.Popen[bytes] | None = None
        # Seconds from the process's start to its first ready answer.
        self.ready_seconds = 0.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return self.env["FASTSHIP_DATABASE_URL"]

    def start(
        self, *, ready_path: str = "/readyz", timeout: float = 60.0, interval: float = 0.05
    ) -> AppServer:
        """Start the process (again, after a stop: same port, same log) and wait until
        ``ready_path`` answers 200. Fails with the log's end if it exits first."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FASTSHIP_")}
        env.update(self.env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app", "serve", "--port", str(self.port), *self.args],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(
                lambda: self._answers(ready_path),
                timeout=timeout,
                interval=interval,
                what=f"{self.base_url}{ready_path} to answer 200",
            )
        except BaseException:
            self.stop()
            raise
        self.ready_seconds = time.monotonic() - started
        return self

    def _answers(self, path: str) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"the server exited with {self.process.returncode} before it was ready:\n"
                + self.log_text()[-4000:]
            )
        try:
            return httpx.get(self.base_url + path, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines, parsed (a line still being written is left out)."""
        records = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return records

    def wait_for_record(self, *, timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
        """Wait until a JSON log line has these fields (``msg="started"``); returns it."""
        return wait_until(
            lambda: next(
                (r for r in self.log_records() if all(r.get(k) == v for k, v in fields.items())),
                None,
            ),
            timeout=timeout,
            interval=0.05,
            what=f"a log line with {fields} in {self.log_path}",
        )

    def requests_in_flight(self) -> int:
        return requests_in_flight(self.base_url)

    def rss_kib(self) -> int:
        """Resident memory of the server process, from /proc."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("VmRSS not found")

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, as Kubernetes sends it; returns the exit code. A server still running
        after ``timeout`` seconds is killed, and the test fails."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError(
                f"the server did not exit within {timeout:.0f}s of SIGTERM (killed):\n"
                + self.log_text()[-4000:]
            ) from None

    def stop(self, timeout: float = 10.0) -> None:
        """Clean-up: SIGTERM, then SIGKILL after ``timeout`` seconds; never fails."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def requests_in_flight(base_url: str) -> int:
    """Requests the service at ``base_url`` is serving (fastship_http_requests_in_flight
    on its /metrics), less the /metrics request that asks."""
    metrics = httpx.get(base_url + "/metrics", timeout=5).text
    gauge = next(
        line
        for line in metrics.splitlines()
        if line.startswith("fastship_http_requests_in_flight ")
    )
    return int(float(gauge.split()[-1])) - 1


@pytest.fixture
def app_servers(tmp_path: Path) -> Iterator[Callable[..., AppServer]]:
    """``start(env, **options)``: an AppServer started and ready, logging to tmp_path;
    every one is stopped after the test. ``options`` go to AppServer and its start."""
    started: list[AppServer] = []

    def start(env: Mapping[str, str], *, args: Sequence[str] = (), **options: Any) -> AppServer:
        server = AppServer(env, tmp_path / f"server-{len(started)}.log", args=args)
        started.append(server)
        return server.start(**options)

    yield start
    for server in started:
        server.stop()
