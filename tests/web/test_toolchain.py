"""The web interface's toolchain on a fresh machine: `npm ci` (which `make run` and
`make web-build` start with) accepts the committed lockfile."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.web.apitypes import WEB


def test_npm_ci_accepts_the_lockfile(tmp_path: Path) -> None:
    """`npm ci` refuses a lockfile out of step with package.json, e.g. one written by an
    `npm install` that skipped an optional dependency the registry does not have. The
    dry run checks that without the network and without node_modules."""
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(WEB / name, tmp_path / name)
    result = subprocess.run(
        [
            "npm",
            "ci",
            "--dry-run",
            "--offline",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--cache",
            str(tmp_path / "cache"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "added" in result.stdout
