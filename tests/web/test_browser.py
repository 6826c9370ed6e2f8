"""The web interface in a real browser: each flow in web/e2e/ runs in Debian's Chromium,
driven by playwright-core, against `python -m app serve` on Postgres.

Every flow also fails on any Content-Security-Policy violation, uncaught page error or
5xx answer, and runs axe-core on its pages (no serious or critical violation).
Screenshots land in web/test-results/<flow>/.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest

from app.core.security import Tokens
from tests.app.conftest import make_settings
from tests.hardening.server import SIGNING_KEY, sql
from tests.support.server import AppServer
from tests.web.apitypes import WEB
from tests.web.conftest import ARTIFACTS, FLOW_SECONDS, Accounts


def node_flow(
    flow: str, server: AppServer, chromium: Path, **accounts: str
) -> subprocess.CompletedProcess[str]:
    """Runs web/e2e/<flow>.mjs with node."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "FASTSHIP_URL": server.base_url,
        "ARTIFACTS_DIR": str(ARTIFACTS),
        "CHROMIUM": str(chromium),
        **accounts,
    }
    return subprocess.run(
        ["node", f"e2e/{flow}.mjs"],
        cwd=WEB,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def run_flow(flow: str, server: AppServer, chromium: Path, **accounts: str) -> dict[str, object]:
    """Runs a flow that must pass; its last line of output is its summary."""
    shots = ARTIFACTS / flow
    for old in shots.glob("*.png"):
        old.unlink()
    started = time.monotonic()
    result = node_flow(flow, server, chromium, **accounts)
    assert result.returncode == 0, (
        f"the {flow} flow failed after {time.monotonic() - started:.1f} s "
        f"(screenshots in {shots}):\n{result.stderr}\n{result.stdout}\n"
        f"service log:\n{server.log_text()[-3000:]}"
    )
    summary: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True
    FLOW_SECONDS[flow] = time.monotonic() - started
    assert sorted(shots.glob("*.png")), f"the {flow} flow wrote no screenshot"
    return summary


def test_signup_login_logout(web_server: AppServer, chromium: Path, accounts: Accounts) -> None:
    run_flow("auth", web_server, chromium, NEW_EMAIL=accounts.fresh_email())


def test_items(web_server: AppServer, chromium: Path, accounts: Accounts) -> None:
    email, password = accounts.user()
    run_flow("items", web_server, chromium, USER_EMAIL=email, USER_PASSWORD=password)


def test_profile_and_password(web_server: AppServer, chromium: Path, accounts: Accounts) -> None:
    email, password = accounts.user()
    other, _ = accounts.user()
    run_flow(
        "profile", web_server, chromium, USER_EMAIL=email, USER_PASSWORD=password, OTHER_EMAIL=other
    )


def test_admin_users(web_server: AppServer, chromium: Path, accounts: Accounts) -> None:
    admin, admin_password = accounts.user(admin=True)
    user, password = accounts.user()
    target, target_password = accounts.user()
    run_flow(
        "admin",
        web_server,
        chromium,
        ADMIN_EMAIL=admin,
        ADMIN_PASSWORD=admin_password,
        USER_EMAIL=user,
        USER_PASSWORD=password,
        OTHER_EMAIL=target,
        OTHER_PASSWORD=target_password,
    )


def test_expired_and_revoked_sessions(
    web_server: AppServer, chromium: Path, accounts: Accounts
) -> None:
    admin, admin_password = accounts.user(admin=True)
    email, password = accounts.user()
    [(user_id, version)] = sql(
        web_server.database_url, "SELECT id, token_version FROM users WHERE email = :e", e=email
    )
    # Signed with the service's key and valid in every way but its expiry.
    tokens = Tokens(make_settings(jwt_secret_key=SIGNING_KEY))
    tokens.lifetime = timedelta(minutes=-5)
    expired = tokens.issue(user_id=user_id, token_version=version, role="user")
    run_flow(
        "session",
        web_server,
        chromium,
        USER_EMAIL=email,
        USER_PASSWORD=password,
        ADMIN_EMAIL=admin,
        ADMIN_PASSWORD=admin_password,
        EXPIRED_TOKEN=expired,
    )


@pytest.mark.parametrize(
    ("mode", "reported"),
    [
        ("csp", "CSP violation: style-src-elem"),
        ("axe", "critical image-alt"),
    ],
)
def test_the_harness_fails_a_broken_page(
    web_server: AppServer, chromium: Path, mode: str, reported: str
) -> None:
    """A page that breaks the policy or has a critical accessibility problem fails its
    flow: the checks every flow relies on can fail."""
    result = node_flow("selfcheck", web_server, chromium, SELFCHECK=mode)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"flow selfcheck-{mode} failed" in result.stderr
    assert reported in result.stderr


def test_every_flow_runs_here() -> None:
    """A flow file added to web/e2e/ without a test here would never run."""
    flows = {path.stem for path in (WEB / "e2e").glob("*.mjs")} - {"harness"}
    run_here = set(re.findall(r'(?:run|node)_flow\(\s*"(\w+)"', Path(__file__).read_text()))
    assert run_here == flows
