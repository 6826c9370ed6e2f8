"""A real PostgreSQL server for the tests, started on a free loopback port.

The server comes from the machine's PostgreSQL installation (Debian's
``postgresql`` package; ``.ci/run`` installs it). PostgreSQL refuses to run as root,
so as root the data directory belongs to the ``postgres`` system user and the server
runs as that user. Each test that asks for ``pg_database`` gets a database of its
own, cloned from a migrated template in about a tenth of a second.

Fixtures:
- ``pg_server`` (session): a ``PostgresServer`` with ``url(dbname)``, ``stop()``,
  ``start()``, ``create_database()``.
- ``pg_database`` (function): the SQLAlchemy URL of a fresh, migrated database.
- ``pg_empty_database`` (function): the URL of a fresh database without a schema.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.waiting import free_port

SUPERUSER = "postgres"


def _find_bindir() -> Path:
    env = os.environ.get("FASTSHIP_PG_BINDIR")
    candidates = [Path(env)] if env else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        candidates.append(Path(pg_ctl).resolve().parent)
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    raise RuntimeError(
        "PostgreSQL server binaries not found: install Debian's `postgresql` package "
        "(apt-get install postgresql) or set FASTSHIP_PG_BINDIR to the directory of initdb"
    )


class PostgresServer:
    def __init__(self, root: Path) -> None:
        self.bindir = _find_bindir()
        self.root = root
        self.datadir = root / "data"
        self.sockdir = root / "sock"
        self.logfile = root / "postgres.log"
        self.port = free_port()
        self.host = "127.0.0.1"
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def init(self) -> None:
        for path in (self.root, self.sockdir):
            path.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sockdir, "postgres", "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        conf = self.datadir / "postgresql.conf"
        with conf.open("a") as handle:
            handle.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.sockdir}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\nshared_buffers = 64MB\n"
            )

    def start(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", "60", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop", check=False)

    @classmethod
    def temporary(cls, prefix: str = "fastship-pg-") -> PostgresServer:
        """A new cluster in a fresh temporary directory, started; ``discard()`` ends it."""
        server = cls(Path(tempfile.mkdtemp(prefix=prefix)))
        server.init()
        server.start()
        return server

    def discard(self) -> None:
        """Stop the server at once and remove its directory."""
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def is_running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.datadir), "status", check=False).returncode == 0

    def url(self, dbname: str = "postgres", *, driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        result = self._run(
            "psql",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-d",
            dbname,
            "-v",
            "ON_ERROR_STOP=1",
            "-Atc",
            sql,
        )
        return result.stdout.strip()

    def create_database(self, name: str | None = None, *, template: str | None = None) -> str:
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        clause = f" TEMPLATE {template}" if template else ""
        self.psql(f'CREATE DATABASE "{name}"{clause}')
        return name


MIGRATED_TEMPLATE = "fastship_migrated"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the test Postgres server carries the ``postgres`` marker, so
    that ``-m "not postgres"`` (``make test-fast``) runs without one. (A fixture that asks
    for the server through ``request.getfixturevalue`` marks its parameter itself.)"""
    for item in items:
        if "pg_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = PostgresServer.temporary()
    try:
        yield server
    finally:
        server.discard()


@pytest.fixture(scope="session")
def _pg_template(pg_server: PostgresServer) -> str:
    from app.core import schema
    from app.core.config import Settings

    pg_server.create_database(MIGRATED_TEMPLATE)
    schema.migrate(Settings(database_url=pg_server.url(MIGRATED_TEMPLATE)))
    return MIGRATED_TEMPLATE


@pytest.fixture
def pg_database(pg_server: PostgresServer, _pg_template: str) -> str:
    """URL of a fresh database at the current schema head."""
    if not pg_server.is_running():
        pg_server.start()  # a previous test stopped it on purpose
    return pg_server.url(pg_server.create_database(template=_pg_template))


@pytest.fixture
def pg_empty_database(pg_server: PostgresServer) -> str:
    """URL of a fresh database with no schema at all."""
    if not pg_server.is_running():
        pg_server.start()
    return pg_server.url(pg_server.create_database())
