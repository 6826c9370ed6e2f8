"""Fixtures of the web interface's tests: the built interface, a running service on a
real Postgres database, and accounts for the browser flows."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.hardening.server import PASSWORD, hardening_server, signup_and_login
from tests.support.postgres import PostgresServer
from tests.support.server import AppServer
from tests.web.apitypes import REPO, WEB

CHROMIUM = Path(os.environ.get("FASTSHIP_CHROMIUM", "/usr/bin/chromium"))
# Screenshots of every flow (and of a failure), kept after the run; gitignored.
ARTIFACTS = WEB / "test-results"
# Seconds per browser flow, shown at the end of the run.
FLOW_SECONDS: dict[str, float] = {}


def _need(program: str, how: str) -> str:
    found = shutil.which(program)
    if found is None:
        pytest.fail(f"{program} is not installed: {how}", pytrace=False)
    return found


@pytest.fixture(scope="session")
def web_dist() -> Path:
    """web/dist built from the current sources: `make web-build` runs `npm ci` when the
    lockfile changed and the Vite build when a source changed."""
    _need("npm", "the web interface's tests need Node.js >= 20.19 and npm")
    result = subprocess.run(
        ["make", "--no-print-directory", "web-build"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"make web-build failed:\n{result.stdout}\n{result.stderr}", pytrace=False)
    return WEB / "dist"


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium "
            "(apt-get install chromium; `make test` installs it from .ci/packages.txt)",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def web_server(
    web_dist: Path,
    pg_server: PostgresServer,
    _pg_template: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AppServer]:
    """`python -m app serve` on a loopback port and a fresh database at the schema head."""
    url = pg_server.url(pg_server.create_database(template=_pg_template))
    server = hardening_server(url, tmp_path_factory.mktemp("web") / "server.log")
    try:
        yield server.start()
    finally:
        server.stop()


class Accounts:
    """Accounts made through the API of the running service."""

    def __init__(self, server: AppServer) -> None:
        self.server = server
        self.client = httpx.Client(base_url=server.base_url, timeout=30)

    def user(self, *, admin: bool = False) -> tuple[str, str]:
        user, _ = signup_and_login(self.client, self.server.database_url, admin=admin)
        return str(user["email"]), PASSWORD

    def fresh_email(self) -> str:
        return f"w{uuid.uuid4().hex[:12]}@example.com"


@pytest.fixture
def accounts(web_server: AppServer) -> Iterator[Accounts]:
    made = Accounts(web_server)
    try:
        yield made
    finally:
        made.client.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FLOW_SECONDS:
        return
    terminalreporter.section("web interface in Chromium")
    for flow, seconds in FLOW_SECONDS.items():
        terminalreporter.write_line(f"{flow}: {seconds:.1f} s")
    terminalreporter.write_line(f"screenshots: {ARTIFACTS}")
