"""Fixtures of the hardening tests: the service as a real server process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.app.conftest import api, api_factory, logs  # noqa: F401 - the service's fixtures
from tests.hardening.server import Server


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start `python -m app serve` processes; each is killed after the test if it is
    still running. ``env`` adds FASTSHIP_* settings."""
    started: list[Server] = []

    def start(database_url: str, **env: str) -> Server:
        server = Server(
            database_url=database_url,
            log_path=tmp_path / f"server-{len(started)}.log",
            env=env,
        )
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.kill()


@pytest.fixture
def server(server_factory: Callable[..., Server], pg_database: str) -> Server:
    return server_factory(pg_database)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the numbers of the hardening run: fuzz cases, writes checked, matrix cells."""
    import sys

    fuzz = sys.modules.get("tests.hardening.test_fuzz")
    if fuzz is not None and fuzz.cases_run():
        counts = fuzz.cases_run()
        detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        terminalreporter.write_line(f"schemathesis: {sum(counts.values())} cases sent ({detail})")
    faults = sys.modules.get("tests.hardening.test_faults")
    if faults is not None and faults.WRITES_CHECKED:
        terminalreporter.write_line(
            "faults: acknowledged writes checked after the Postgres outage: "
            f"{sum(faults.WRITES_CHECKED)}"
        )
    matrix = sys.modules.get("tests.hardening.test_access_matrix")
    if matrix is not None:
        terminalreporter.write_line(f"access-control matrix: {matrix.matrix_cells()} cells")
