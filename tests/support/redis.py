"""A real redis-server (Debian's `redis-server` package) on a free loopback port, for
the tests (the ``redis_url`` fixture) and the cache benchmark (``redis_server()``)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from tests.support.waiting import free_port, wait_until


@contextmanager
def redis_server() -> Iterator[str]:
    """Start a redis-server without persistence, yield its URL, stop it."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server not found: apt-get install redis-server")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="fastship-redis-"))
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=port)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_until(answers, timeout=10, interval=0.05, what="redis-server to answer PING")
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server not found: apt-get install redis-server (.ci/run does)")
    with redis_server() as url:
        yield url
