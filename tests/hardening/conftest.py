"""Fixtures of the hardening tests: the service as a real server process."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.app.conftest import api, api_factory, logs  # noqa: F401 - the service's fixtures
from tests.hardening.server import hardening_env
from tests.support.server import AppServer


@pytest.fixture
def server_factory(app_servers: Callable[..., AppServer]) -> Callable[..., AppServer]:
    """``start(database_url, **env)``: a ready `python -m app serve` process; ``env``
    adds FASTSHIP_* settings. Each is stopped after the test."""
    return lambda database_url, **env: app_servers(hardening_env(database_url, **env))


@pytest.fixture
def server(server_factory: Callable[..., AppServer], pg_database: str) -> AppServer:
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
