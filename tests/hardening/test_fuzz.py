"""schemathesis against the service's own OpenAPI document, served by a real
`python -m app serve` process, on a real Postgres database and on the embedded SQLite
default: every test below runs once per backend.

Every operation is fuzzed as three callers (anonymous, a user, an admin), and a
stateful run follows the links schemathesis infers between operations (create an
item, then read, change and delete it). The checks: no 5xx; status code, content type,
headers and body as documented (errors included); invalid input refused; auth
enforced (``ignored_auth``); a deleted resource stays gone (``use_after_free``); a
created one can be read (``ensure_resource_availability``); every timestamp in a body
is RFC 3339 with its offset, as `date-time` documents (JSON Schema leaves formats
unchecked).

Examples per operation are bounded so that the module runs in about two minutes on
two cores; the number of cases run is printed at the end of the session.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import Flaky
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    use_after_free,
)

from app.main import create_app
from tests.app.conftest import make_settings
from tests.hardening.server import hardening_server, signup_and_login
from tests.support.postgres import PostgresServer
from tests.support.server import AppServer

MAX_EXAMPLES = 12
STATEFUL_STEPS = 25

_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _timestamps(body: Any) -> list[str]:
    if isinstance(body, dict):
        found = [v for k, v in body.items() if k.endswith("_at") and isinstance(v, str)]
        return found + [t for v in body.values() for t in _timestamps(v)]
    if isinstance(body, list):
        return [t for v in body for t in _timestamps(v)]
    return []


@schemathesis.check
def timestamps_have_offsets(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every ``*_at`` field of a JSON body is RFC 3339 with a UTC offset."""
    try:
        body = response.json()
    except ValueError:  # not JSON (the metrics page, an empty 204)
        return None
    bad = [t for t in _timestamps(body) if not _RFC3339.match(t)]
    if bad:
        raise AssertionError(f"timestamps without an RFC 3339 offset: {bad[:3]}")
    return None


CHECKS = [
    not_a_server_error,
    timestamps_have_offsets,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
AUTHENTICATED_CHECKS = [*CHECKS, ignored_auth]
STATEFUL_CHECKS = [*AUTHENTICATED_CHECKS, use_after_free, ensure_resource_availability]

CASES: Counter[str] = Counter()


def cases_run() -> Counter[str]:
    """Cases sent so far in this session, by caller (read by the terminal summary)."""
    return CASES


@pytest.fixture(
    scope="module", params=[pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"]
)
def fuzz_server(request: pytest.FixtureRequest, tmp_path_factory: Any) -> Iterator[AppServer]:
    work = Path(tmp_path_factory.mktemp("fuzz"))
    env: dict[str, str] = {}
    if request.param == "postgres":
        pg_server: PostgresServer = request.getfixturevalue("pg_server")
        template: str = request.getfixturevalue("_pg_template")
        url = pg_server.url(pg_server.create_database(template=template))
    else:
        url = f"sqlite:///{work / 'fastship.db'}"
        env["FASTSHIP_AUTO_MIGRATE"] = "true"
    server = hardening_server(url, work / "server.log", **env).start()
    try:
        yield server
    finally:
        server.stop()
    # A 5xx leaves a traceback in the server's log: show it with the failure.
    assert '"level": "error"' not in server.log_text(), server.log_text()[-6000:]


class Callers:
    """A bearer header per caller, replaced when the fuzzer revoked it (an admin may
    disable, demote or delete the fuzzing accounts, or change their password)."""

    def __init__(self, server: AppServer) -> None:
        self.server = server
        self.client = httpx.Client(base_url=server.base_url, timeout=30)
        self._headers: dict[str, dict[str, str]] = {}

    def headers(self, identity: str) -> dict[str, str]:
        if identity == "anonymous":
            return {}
        cached = self._headers.get(identity)
        if cached and self.client.get("/api/v1/users/me", headers=cached).status_code == 200:
            return cached
        _, fresh = signup_and_login(
            self.client, self.server.database_url, admin=identity == "admin"
        )
        self._headers[identity] = fresh
        return fresh


@pytest.fixture(scope="module")
def callers(fuzz_server: AppServer) -> Callers:
    return Callers(fuzz_server)


def _openapi() -> dict[str, Any]:
    # The document the server serves is generated from the same code; building it
    # needs no database, so that the operations are known when pytest collects.
    document: dict[str, Any] = create_app(make_settings()).openapi()
    return document


schema = schemathesis.openapi.from_dict(_openapi())


@pytest.fixture(scope="module")
def api_schema(fuzz_server: AppServer) -> Any:
    served = httpx.get(f"{fuzz_server.base_url}/openapi.json").json()
    assert served == _openapi(), "the served OpenAPI differs from the one fuzzed"
    return schema


FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
    # No shrinking: the server's state moves on, so a replayed case can differ.
    phases=[Phase.explicit, Phase.generate],
)


def _fuzz(case: Any, identity: str, callers: Callers) -> None:
    headers = callers.headers(identity)
    checks = CHECKS if identity == "anonymous" else AUTHENTICATED_CHECKS
    CASES[identity] += 1
    case.call_and_validate(
        base_url=callers.server.base_url, headers=headers, checks=checks, timeout=30
    )


# One test per caller: schemathesis' lazy schemas take no pytest parameters.
@schema.parametrize()
@FUZZ_SETTINGS
def test_every_operation_anonymous(case: Any, callers: Callers) -> None:
    _fuzz(case, "anonymous", callers)


@schema.parametrize()
@FUZZ_SETTINGS
def test_every_operation_as_user(case: Any, callers: Callers) -> None:
    _fuzz(case, "user", callers)


@schema.parametrize()
@FUZZ_SETTINGS
def test_every_operation_as_admin(case: Any, callers: Callers) -> None:
    _fuzz(case, "admin", callers)


@pytest.mark.parametrize("identity", ["user", "admin"])
def test_stateful_links(api_schema: Any, callers: Callers, identity: str) -> None:
    base = api_schema.as_state_machine()
    transitions = api_schema.statistic.transitions.total
    assert transitions > 0, "schemathesis inferred no links between operations"
    failures: list[str] = []
    key = f"stateful {identity}"

    class Machine(base):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {
                "base_url": callers.server.base_url,
                "headers": callers.headers(identity),
                "timeout": 30,
            }

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            # Failures are collected rather than raised: Hypothesis would replay the
            # scenario, and against a server whose data moved on the replay differs.
            CASES[key] += 1
            try:
                case.validate_response(
                    response,
                    checks=STATEFUL_CHECKS,
                    transport_kwargs=kwargs,
                    headers=kwargs.get("headers"),
                )
            except FailureGroup as exc:
                failures.append(str(exc))

    runs = 0
    while CASES[key] < STATEFUL_STEPS * 3 and runs < 10:
        runs += 1
        try:
            Machine.run(
                settings=settings(
                    max_examples=STATEFUL_STEPS,
                    stateful_step_count=6,
                    deadline=None,
                    suppress_health_check=list(HealthCheck),
                    database=None,
                    phases=[Phase.generate],
                )
            )
        except Flaky:
            # Hypothesis noticed that the server's answers changed between two runs of
            # the same scenario (the data moved on): start a fresh run, as
            # schemathesis' own runner does.
            continue
    assert not failures, "\n".join(failures[:5])
    assert CASES[key] > 0
