"""Fixtures of the chart tests: the helm binary and rendering helpers."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kube import tools_bin

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "fastship"
RELEASE = "demo"
NAMESPACE = "apps"
# The newest Kubernetes the tests render for by default (the local control plane's).
KUBE_VERSION = "1.36.0"


@dataclass(frozen=True)
class Rendered:
    """The objects of one `helm template`, with lookups by kind and name."""

    objects: list[dict[str, Any]]

    def kinds(self) -> list[str]:
        return sorted(o["kind"] for o in self.objects)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.all(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, (
            f"expected one {kind} {name or ''}, found {len(found)}: "
            f"{[o['metadata']['name'] for o in self.all(kind)]}"
        )
        return found[0]

    def has(self, kind: str, name: str | None = None) -> bool:
        return any(name is None or o["metadata"]["name"] == name for o in self.all(kind))


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    """The helm that `make tools` builds; fails (does not skip) when it is missing."""
    helm = tools_bin() / "helm"
    if not os.access(helm, os.X_OK):
        pytest.fail(f"helm not found at {helm}: run `make tools`", pytrace=False)
    return helm


def _values_args(values: Mapping[str, Any] | None, tmp: Path) -> list[str]:
    if not values:
        return []
    path = tmp / f"values-{abs(hash(repr(values)))}.yaml"
    path.write_text(yaml.safe_dump(dict(values), sort_keys=False))
    return ["--values", str(path)]


def run_template(
    helm: Path,
    values: Mapping[str, Any] | None,
    tmp: Path,
    *,
    kube_version: str = KUBE_VERSION,
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    cmd = [
        str(helm),
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        kube_version,
        *_values_args(values, tmp),
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def parse_objects(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


RenderFn = Callable[..., Rendered]
RenderErrorFn = Callable[..., str]


@pytest.fixture
def render(helm_bin: Path, tmp_path: Path) -> RenderFn:
    """render(values, kube_version=..., extra=(...)) -> Rendered; fails on a helm error."""

    def _render(
        values: Mapping[str, Any] | None = None,
        *,
        kube_version: str = KUBE_VERSION,
        extra: tuple[str, ...] = (),
    ) -> Rendered:
        proc = run_template(helm_bin, values, tmp_path, kube_version=kube_version, extra=extra)
        assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
        return Rendered(parse_objects(proc.stdout))

    return _render


@pytest.fixture
def render_error(helm_bin: Path, tmp_path: Path) -> RenderErrorFn:
    """render_error(values, extra=(...)) -> helm's error output; fails if helm succeeds."""

    def _render_error(
        values: Mapping[str, Any] | None = None,
        *,
        kube_version: str = KUBE_VERSION,
        extra: tuple[str, ...] = (),
    ) -> str:
        proc = run_template(helm_bin, values, tmp_path, kube_version=kube_version, extra=extra)
        assert proc.returncode != 0, (
            f"helm template accepted values {values} {extra}; output starts:\n{proc.stdout[:500]}"
        )
        return proc.stderr

    return _render_error
