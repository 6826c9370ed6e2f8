"""The command line: help, namespace resolution, clear errors."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fastship_operator.main import UsageError, configure_logging, resolve_namespace


def test_help_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fastship_operator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--namespace" in proc.stdout
    assert "FASTSHIP_OPERATOR_NAMESPACE" in proc.stdout


def test_a_bad_metrics_address_is_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fastship_operator", "--namespace", "x", "--metrics", "8081"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        check=False,
    )
    assert proc.returncode == 2
    assert "--metrics must be host:port (e.g. 0.0.0.0:8081) or 'off'" in proc.stderr


def test_namespace_precedence(tmp_path: Path) -> None:
    ns_file = tmp_path / "namespace"
    ns_file.write_text("from-pod\n")
    env = {"FASTSHIP_OPERATOR_NAMESPACE": "from-env"}
    assert resolve_namespace("from-flag", env, ns_file) == "from-flag"
    assert resolve_namespace(None, env, ns_file) == "from-env"
    assert resolve_namespace(None, {}, ns_file) == "from-pod"


def test_no_namespace_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="pass --namespace, set FASTSHIP_OPERATOR_NAMESPACE"):
        resolve_namespace(None, {}, tmp_path / "missing")


def test_missing_namespace_exits_with_usage(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "fastship_operator"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 2
    assert "no namespace to watch" in proc.stderr


def test_log_lines_are_json_with_the_object(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    touched = ("kopf", "kopf.objects", "kopf.activities.probe", "aiohttp.access")
    levels = {name: logging.getLogger(name).level for name in touched}
    try:
        configure_logging("INFO")
        logging.getLogger("fastship_operator").info(
            "created Job %s",
            "app-1a2b",
            extra={
                "k8s_ref": {"kind": "Migration", "namespace": "shop", "name": "app"},
                "k8s_skip": False,
                "settings": object(),
            },
        )
        logging.getLogger("kopf.objects").info("Handler 'migration_changed' succeeded.")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        for name, old in levels.items():
            logging.getLogger(name).setLevel(old)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 1, "kopf's per-event INFO lines are not logged"
    (entry,) = lines
    assert entry["msg"] == "created Job app-1a2b"
    assert entry["level"] == "info"
    assert entry["object"] == "Migration/shop/app"
    assert "settings" not in entry
    assert "k8s_ref" not in entry


def test_a_taken_metrics_port_stops_the_operator_with_the_fix(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "fastship_operator", "--namespace", "x", "--liveness", "off",
             "--metrics", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
            check=False,
        )  # fmt: skip
    assert proc.returncode == 1
    assert f"cannot serve /metrics and /readyz on 127.0.0.1:{port}" in proc.stdout
    assert "choose another port with --metrics or FASTSHIP_OPERATOR_METRICS" in proc.stdout
