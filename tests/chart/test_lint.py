"""`helm lint --strict` with the defaults and with each mode."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.chart.conftest import CHART, KUBE_VERSION

LINT_CASES: dict[str, list[str]] = {
    "defaults": [],
    "hpa": ["--set", "autoscaling.enabled=true"],
    "external": [
        "--set",
        "postgresql.mode=external",
        "--set",
        "postgresql.external.existingSecret=db",
    ],
    "cloudnativepg": ["--set", "postgresql.mode=cloudnativepg"],
    "hook": ["--set", "migrations.mode=hook", "--set", "operator.enabled=false"],
    "gitops": [
        "--set",
        "migrations.mode=job",
        "--set",
        "operator.enabled=false",
        "--set",
        "global.imageRegistry=registry.example.com",
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set",
        "metrics.grafanaDashboard.enabled=true",
    ],
    "ingress+httproute": [
        "--set",
        "ingress.enabled=true",
        "--set",
        "httpRoute.enabled=true",
        "--set",
        "httpRoute.parentRefs[0].name=gw",
    ],
}


@pytest.mark.parametrize("case", list(LINT_CASES))
def test_helm_lint_strict(case: str, helm_bin: Path) -> None:
    proc = subprocess.run(
        [
            str(helm_bin),
            "lint",
            "--strict",
            "--kube-version",
            KUBE_VERSION,
            str(CHART),
            *LINT_CASES[case],
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout


def test_helm_lint_fails_on_bad_values(helm_bin: Path) -> None:
    proc = subprocess.run(
        [str(helm_bin), "lint", "--strict", str(CHART), "--set", "postgresql.mode=nope"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0
    assert "/postgresql/mode" in proc.stdout + proc.stderr


def test_helm_lint_strict_crds_chart(helm_bin: Path) -> None:
    proc = subprocess.run(
        [str(helm_bin), "lint", "--strict", "--kube-version", KUBE_VERSION,
         str(CHART.parent / "fastship-crds")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout
