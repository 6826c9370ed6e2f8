"""k8s/kind-config.yaml and the kind add-ons that `make kind-up` applies.

The config is checked by kind's own code: tools/kindcheck runs kind's config loader
(strict decoding into the v1alpha4 types, defaulting, conversion) and kind's validation,
from the kind release pinned in tools/kindcheck/go.mod. kind itself cannot run here (no
container runtime for its nodes), so creating the cluster is not tested.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.checks import validate
from tests.devloop.skaffoldcfg import REPO_ROOT, load, release
from tests.support.kube import tools_bin

KIND_CONFIG = REPO_ROOT / "k8s" / "kind-config.yaml"
KINDCHECK = REPO_ROOT / "tools" / "kindcheck"
METRICS_SERVER = REPO_ROOT / "k8s" / "kind" / "metrics-server"
NAMESPACE = REPO_ROOT / "k8s" / "kind" / "namespace.yaml"
DEV_MK = REPO_ROOT / "mk" / "dev.mk"


@pytest.fixture(scope="session")
def kindcheck() -> Path:
    """Build kindcheck once per kind version (cached outside the repository)."""
    proc = subprocess.run(
        [str(KINDCHECK / "build.sh")], capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, f"building kindcheck failed:\n{proc.stderr}"
    binary = Path(proc.stdout.strip().splitlines()[-1])
    assert binary.is_file(), proc.stdout
    return binary


def check(kindcheck: Path, *paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(kindcheck), *map(str, paths)], capture_output=True, text=True, timeout=60, check=False
    )


def loaded_config(kindcheck: Path) -> tuple[dict[str, Any], str]:
    proc = check(kindcheck, KIND_CONFIG)
    assert proc.returncode == 0, f"kind rejects {KIND_CONFIG.name}:\n{proc.stderr}"
    report = json.loads(proc.stdout)
    return report["configs"][str(KIND_CONFIG)], report["kindNodeImage"]


def test_kind_accepts_the_config(kindcheck: Path) -> None:
    cfg, kind_image = loaded_config(kindcheck)
    assert cfg["Name"] == "fastship"
    roles = [n["Role"] for n in cfg["Nodes"]]
    assert roles.count("control-plane") == 1
    assert roles.count("worker") >= 1
    # Every node runs the node image of the pinned kind release, pinned by digest.
    assert "@sha256:" in kind_image
    assert {n["Image"] for n in cfg["Nodes"]} == {kind_image}
    # Workers in more than one zone, so that topology spread has something to spread over.
    zones = {
        n["Labels"].get("topology.kubernetes.io/zone")
        for n in cfg["Nodes"]
        if n["Role"] == "worker"
    }
    assert len(zones) >= 2
    assert None not in zones


def test_host_ports_listen_on_loopback_only(kindcheck: Path) -> None:
    cfg, _ = loaded_config(kindcheck)
    assert cfg["Networking"]["APIServerAddress"] == "127.0.0.1"
    mappings = [m for n in cfg["Nodes"] for m in n["ExtraPortMappings"]]
    assert {m["ContainerPort"] for m in mappings} == {80, 443}, "ingress ports"
    for m in mappings:
        assert m["ListenAddress"] == "127.0.0.1", m
    ingress_nodes = [n for n in cfg["Nodes"] if n["ExtraPortMappings"]]
    assert all(n["Labels"].get("ingress-ready") == "true" for n in ingress_nodes)


def test_make_targets_use_the_config_and_its_cluster_name(kindcheck: Path) -> None:
    cfg, _ = loaded_config(kindcheck)
    mk = DEV_MK.read_text()
    assert f"KIND_CLUSTER   ?= {cfg['Name']}" in mk
    assert "--config k8s/kind-config.yaml" in mk
    # The release goes to the namespace that kind-up creates with Pod Security labels.
    namespace = yaml.safe_load(NAMESPACE.read_text())
    assert namespace["metadata"]["name"] == release(load())["namespace"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (  # a misspelt field: kind decodes strictly
            """
            kind: Cluster
            apiVersion: kind.x-k8s.io/v1alpha4
            name: fastship
            nodes:
              - role: control-plane
                extraPortMapping: []
            """,
            "field extraPortMapping not found",
        ),
        (
            """
            kind: Cluster
            apiVersion: kind.x-k8s.io/v1alpha4
            name: fastship
            nodes:
              - role: worker
            """,
            "must have at least one control-plane node",
        ),
        (
            """
            kind: Cluster
            apiVersion: kind.x-k8s.io/v1alpha4
            name: fastship
            nodes:
              - role: control-plane
                extraPortMappings:
                  - {containerPort: 80, hostPort: 8080, listenAddress: 127.0.0.1}
                  - {containerPort: 81, hostPort: 8080, listenAddress: 127.0.0.1}
            """,
            "port mapping with same listen address, port and protocol already configured",
        ),
        (
            """
            kind: Cluster
            apiVersion: kind.x-k8s.io/v1alpha3
            name: fastship
            """,
            "unknown apiVersion: kind.x-k8s.io/v1alpha3",
        ),
        (
            """
            kind: Cluster
            apiVersion: kind.x-k8s.io/v1alpha4
            name: Fast_Ship
            """,
            "not a valid cluster name",
        ),
    ],
    ids=["unknown-field", "no-control-plane", "duplicate-host-port", "old-api", "bad-name"],
)
def test_kind_rejects_broken_configs(
    kindcheck: Path, tmp_path: Path, config: str, expected: str
) -> None:
    path = tmp_path / "kind-config.yaml"
    path.write_text(textwrap.dedent(config))
    proc = check(kindcheck, path)
    assert proc.returncode == 1, f"kind accepted a broken config:\n{proc.stdout}"
    assert str(path) in proc.stderr, proc.stderr
    assert expected in proc.stderr, proc.stderr


def test_metrics_server_for_kind(tmp_path: Path) -> None:
    kubectl = tools_bin() / "kubectl"
    if not kubectl.exists():
        pytest.fail(f"kubectl not found at {kubectl}: run `make tools`", pytrace=False)
    proc = subprocess.run(
        [str(kubectl), "kustomize", str(METRICS_SERVER)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    objects = [o for o in yaml.safe_load_all(proc.stdout) if o]
    for obj in objects:
        validate(obj, "1.37.0")
    kinds = sorted(o["kind"] for o in objects)
    assert "APIService" in kinds
    assert "Deployment" in kinds
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["metadata"]["namespace"] == "kube-system"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    # kind's kubelets serve self-signed certificates
    assert "--kubelet-insecure-tls" in args
    assert len(args) == len(set(args))
    assert container["image"].startswith("registry.k8s.io/metrics-server/metrics-server:v")
