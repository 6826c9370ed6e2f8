"""The image at work: migrations, the API, the operator entrypoint, signals, PID 1.

Containers run on the host network against the test Postgres, with the settings
the chart gives them: one FASTSHIP_DATABASE_URL in the `postgresql://` form of a
CloudNativePG or chart Secret, a real signing key, production mode.
"""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import pytest

from tests.image.conftest import NUMBERS, Image
from tests.image.engine import Engine, http_get, port_open, running
from tests.support.server import requests_in_flight
from tests.support.waiting import free_port, wait_until

pytestmark = [pytest.mark.image, pytest.mark.postgres, pytest.mark.slow]

# What the chart's securityContext and volumes give a container: the root
# filesystem read-only with an emptyDir at /tmp, no capabilities, no privilege
# escalation.
READ_ONLY = (
    "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,size=64m,mode=1777",
    "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
)  # fmt: skip


def secret_url(url: str) -> str:
    """The URL as a Secret holds it (`postgresql://`); the app picks the driver."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def serve_env(database_url: str, port: int, jwt_key: str) -> dict[str, str]:
    return {
        "FASTSHIP_DATABASE_URL": secret_url(database_url),
        "FASTSHIP_PORT": str(port),
        "FASTSHIP_ENVIRONMENT": "production",
        "FASTSHIP_JWT_SECRET_KEY": jwt_key,
    }


def run_migrate(
    engine: Engine, image: Image, database_url: str, tmp_path: Path, *options: str
) -> str:
    """`python -m app migrate` in the image; returns the revision it reported."""
    termination_log = tmp_path / "termination-log"
    termination_log.write_text("")
    termination_log.chmod(0o666)  # Kubernetes makes it writable for any UID too
    result = engine(
        "run", "--rm", "--network", "host", *options,
        "-v", f"{termination_log}:/dev/termination-log:rw",
        "-e", f"FASTSHIP_DATABASE_URL={secret_url(database_url)}",
        image.tag, "python", "-m", "app", "migrate",
    )  # fmt: skip
    match = re.search(r"database at revision (\w+) \(current\)", result.stdout)
    assert match, result.stdout + result.stderr
    assert termination_log.read_text() == match.group(1)
    return match.group(1)


def test_migrate_then_serve(
    engine: Engine, image: Image, pg_empty_database: str, tmp_path: Path, jwt_key: str
) -> None:
    revision = run_migrate(engine, image, pg_empty_database, tmp_path)
    port = free_port()
    with running(
        engine, image.tag, env=serve_env(pg_empty_database, port, jwt_key), port=port
    ) as server:
        ready = server.wait_ready()
        NUMBERS["start to ready (/readyz 200)"] = f"{ready:.2f} s"
        status, body = http_get(port, "/readyz")
        assert status == 200
        assert revision in body.decode()
        status, body = http_get(port, "/openapi.json")
        assert status == 200
        assert json.loads(body)["info"]["version"] == image.version


def test_serves_without_a_database_on_sqlite_in_tmp(engine: Engine, image: Image) -> None:
    """Without database settings the image serves from an SQLite file in /tmp, so a
    plain `podman run` works, read-only root filesystem included."""
    port = free_port()
    with running(
        engine, image.tag, env={"FASTSHIP_PORT": str(port)}, options=READ_ONLY, port=port
    ) as server:
        server.wait_ready()
        assert signup(port, "sqlite@example.com").startswith(b"HTTP/1.1 201")
        engine("exec", server.name, "test", "-s", "/tmp/fastship.db")
        # The web interface, from the files the image carries.
        status, page = http_get(port, "/")
        assert status == 200
        script = re.search(rb'src="\./(assets/[^"]+\.js)"', page)
        assert script, page[:500]
        status, _ = http_get(port, "/" + script.group(1).decode())
        assert status == 200


def test_serve_is_not_ready_before_migrate(
    engine: Engine, image: Image, pg_empty_database: str, jwt_key: str
) -> None:
    port = free_port()
    with running(
        engine, image.tag, env=serve_env(pg_empty_database, port, jwt_key), port=port
    ) as server:
        server.wait_ready("/healthz")
        status, _ = http_get(port, "/readyz")
        assert status == 503


def test_wait_for_schema(
    engine: Engine, image: Image, pg_database: str, pg_empty_database: str
) -> None:
    def wait(url: str) -> int:
        return engine(
            "run", "--rm", "--network", "host", *READ_ONLY,
            "-e", f"FASTSHIP_DATABASE_URL={secret_url(url)}",
            image.tag, "python", "-m", "app", "wait-for-schema", "--timeout", "2",
            "--interval", "0.5", check=False,
        ).returncode  # fmt: skip

    assert wait(pg_database) == 0
    assert wait(pg_empty_database) == 1


def test_processes_run_as_the_non_root_user(
    engine: Engine, image: Image, pg_database: str, jwt_key: str
) -> None:
    port = free_port()
    with running(engine, image.tag, env=serve_env(pg_database, port, jwt_key), port=port) as server:
        server.wait_ready()
        # Seen from the host: PID 1 of the container (tini) and the server under it.
        host_pid = server.host_pid()
        children = Path(f"/proc/{host_pid}/task/{host_pid}/children").read_text().split()
        assert children, "tini has no child process"
        for pid in [host_pid, *map(int, children)]:
            status = Path(f"/proc/{pid}/status").read_text()
            uids = re.search(r"^Uid:\s+(.*)$", status, re.M)
            gids = re.search(r"^Gid:\s+(.*)$", status, re.M)
            assert uids, status
            assert gids, status
            assert set(uids.group(1).split()) == {"10001"}, status
            assert set(gids.group(1).split()) == {"10001"}, status
        comm = Path(f"/proc/{host_pid}/comm").read_text().strip()
        assert comm == "tini"


def test_read_only_root_filesystem(
    engine: Engine, image: Image, pg_empty_database: str, tmp_path: Path, jwt_key: str
) -> None:
    run_migrate(engine, image, pg_empty_database, tmp_path, *READ_ONLY)
    port = free_port()
    with running(
        engine,
        image.tag,
        env=serve_env(pg_empty_database, port, jwt_key),
        options=READ_ONLY,
        port=port,
    ) as server:
        server.wait_ready()
        assert signup(port, "readonly@example.com").startswith(b"HTTP/1.1 201")
        refused = engine("exec", server.name, "touch", "/opt/fastship/x", check=False)
        assert refused.returncode != 0
        assert "Read-only file system" in refused.stderr
        engine("exec", server.name, "touch", "/tmp/x")


def signup(port: int, email: str) -> bytes:
    body = json.dumps({"email": email, "password": "correct horse battery staple"}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request_head(len(body)) + body)
        return read_response(sock)


def request_head(length: int) -> bytes:
    return (
        "POST /api/v1/users/signup HTTP/1.1\r\nHost: fastship\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()


def read_response(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_sigterm_lets_a_slow_request_finish(
    engine: Engine, image: Image, pg_database: str, jwt_key: str
) -> None:
    """SIGTERM to the container (to tini, PID 1) while a client is still sending its
    request body: the server stops accepting connections, finishes the request,
    and the container exits 0."""
    port = free_port()
    body = json.dumps(
        {
            "email": "slow@example.com",
            "password": "correct horse battery staple",
            "full_name": "Slow Client",
        }
    ).encode()
    with running(engine, image.tag, env=serve_env(pg_database, port, jwt_key), port=port) as server:
        server.wait_ready()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(request_head(len(body)) + body[:10])
            # The server has the request line and headers: the request is in flight.
            wait_until(
                lambda: requests_in_flight(f"http://127.0.0.1:{port}") >= 1,
                timeout=10,
                interval=0.05,
                what="the slow request in flight",
            )
            server.signal("TERM")
            wait_until(
                lambda: not port_open(port),
                timeout=10,
                interval=0.05,
                what="the server to stop accepting connections after SIGTERM",
            )
            # The rest of the body trickles in over about a second.
            for start in range(10, len(body), 8):
                sock.sendall(body[start : start + 8])
                time.sleep(0.1)
            response = read_response(sock)
        assert response.startswith(b"HTTP/1.1 201"), response[:500]
        assert b"slow@example.com" in response
        assert server.wait(timeout=30) == 0, server.logs()[-3000:]


ZOMBIE_PROBE = r"""
import os, time
child = os.fork()
if child == 0:
    if os.fork() == 0:      # the grandchild outlives its parent...
        time.sleep(0.3)
        os._exit(0)
    os._exit(0)
os.waitpid(child, 0)
time.sleep(1.5)             # ...is re-parented to PID 1 and exits
zombies = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            zombies += stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        pass
print(zombies)
"""


def test_tini_reaps_orphaned_processes(engine: Engine, image: Image) -> None:
    def zombies(*entrypoint: str) -> int:
        result = engine(
            "run", "--rm", "--network", "none", *entrypoint, image.tag, "python", "-c", ZOMBIE_PROBE
        )
        return int(result.stdout.strip())

    assert zombies() == 0
    # The same with python as PID 1 instead of tini: the orphan stays a zombie.
    assert zombies("--entrypoint", "") == 1


def test_operator_entrypoint_answers_help(engine: Engine, image: Image) -> None:
    result = engine(
        "run",
        "--rm",
        "--network",
        "none",
        *READ_ONLY,
        image.tag,
        "python",
        "-m",
        "fastship_operator",
        "--help",
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "usage: python -m fastship_operator" in result.stdout
