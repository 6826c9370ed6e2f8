"""Fixtures for running the operator against the local control plane.

The operator runs in the test process (kopf's ``KopfRunner``) with the credentials of a
ServiceAccount that is bound to exactly the Role the chart renders from
``charts/fastship/files/operator-rbac-rules.yaml``: a permission the operator lacks fails
these tests, as it would fail in a cluster.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner

from tests.operator.harness import install_crds, service_account_kubeconfig
from tests.support.conditions import condition_is
from tests.support.kube import Kube
from tests.support.waiting import wait_until


@pytest.fixture(scope="session")
def crds(kube: Kube) -> None:
    """The two CRDs from the chart's crds/ folder, installed and established."""
    install_crds(kube)


class Operator:
    """The operator running in this process under the ServiceAccount's credentials."""

    def __init__(self, namespace: str, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch):
        self.namespace = namespace
        self.kubeconfig = kubeconfig
        self._monkeypatch = monkeypatch
        self._runner: KopfRunner | None = None
        self.outputs: list[str] = []
        # A test that takes permissions away on purpose sets this.
        self.expect_forbidden = False
        # The operator's environment (read at its start-up). The Migration tests have no
        # Deployment that runs their image: the allowlist admits it.
        self.env: dict[str, str] = {
            "FASTSHIP_OPERATOR_ALLOWED_IMAGES": "registry.example/*",
            "FASTSHIP_OPERATOR_INSTANCE": "",
            "FASTSHIP_OPERATOR_METRICS": "off",
            "FASTSHIP_OPERATOR_NAMESPACE": namespace,
        }

    def start(self) -> None:
        assert self._runner is None, "already running"
        for name, value in self.env.items():
            self._monkeypatch.setenv(name, value)
        self._monkeypatch.setenv("KUBECONFIG", str(self.kubeconfig))
        self._monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        runner = KopfRunner(
            [
                "run",
                "--standalone",
                "--namespace",
                self.namespace,
                "--verbose",
                "-m",
                "fastship_operator.handlers",
            ],
            timeout=60,
        )
        runner.__enter__()
        self._runner = runner

    def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        t0 = time.monotonic()
        runner.__exit__(None, None, None)
        self.outputs.append(runner.output)
        assert runner.exit_code == 0, runner.output[-4000:]
        assert time.monotonic() - t0 < 30, "the operator took too long to stop"

    def restart(self, **env: str) -> None:
        """Stop, change the environment (``FASTSHIP_OPERATOR_*`` names), start again."""
        self.stop()
        self.env.update(env)
        self.start()

    @property
    def output(self) -> str:
        return "\n".join(self.outputs)


@pytest.fixture
def operator(
    kube: Kube,
    crds: None,
    restricted_namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Operator]:
    """The operator watching a fresh namespace that enforces Pod Security "restricted"."""
    kubeconfig = service_account_kubeconfig(
        kube, restricted_namespace, tmp_path / "operator.kubeconfig"
    )
    op = Operator(restricted_namespace, kubeconfig, monkeypatch)
    op.start()
    try:
        yield op
    finally:
        op.stop()
        forbidden = [line for line in op.output.splitlines() if "forbidden" in line.lower()]
        assert op.expect_forbidden or not forbidden, (
            "the operator lacked a permission:\n" + "\n".join(forbidden[:10])
        )


# --- helpers used by the tests ------------------------------------------------------------


def get(kube: Kube, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    proc = kube.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    if proc.returncode != 0:
        if "NotFound" in proc.stderr:
            return None
        raise AssertionError(proc.stderr)
    return dict(json.loads(proc.stdout))


def items(kube: Kube, kind: str, namespace: str, selector: str | None = None) -> list[Any]:
    return list(kube.get(kind, namespace=namespace, selector=selector)["items"])


def events(kube: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    return [
        e
        for e in items(kube, "events", namespace)
        if e.get("involvedObject", {}).get("name") == name
    ]


def wait_for(
    kube: Kube, kind: str, name: str, namespace: str, check: Any, what: str, timeout: float = 60
) -> dict[str, Any]:
    """Poll an object until ``check(obj)`` is true; returns the object."""

    def probe() -> dict[str, Any] | None:
        obj = get(kube, kind, name, namespace)
        return obj if obj is not None and check(obj) else None

    return dict(wait_until(probe, timeout=timeout, interval=0.25, what=what))


def wait_applied(
    kube: Kube, namespace: str, what: str, *, name: str = "app", timeout: float = 60
) -> dict[str, Any]:
    """Poll an AppConfig until its Applied condition is True; returns it."""
    return wait_for(
        kube,
        "appconfig",
        name,
        namespace,
        condition_is("Applied", status="True"),
        what,
        timeout,
    )
