"""The values skaffold hands to helm, per profile, render valid manifests.

The chart is rendered with exactly the values files, `setValues` and expanded
`setValueTemplates` of skaffold.yaml (see skaffoldcfg.helm_value_files), for the
Kubernetes of the local control plane and of the kind node image, and every object
passes the chart tests' strict validation.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.checks import assert_restricted, pod_spec, validate
from tests.chart.conftest import Rendered, parse_objects
from tests.devloop import skaffoldcfg
from tests.devloop.skaffoldcfg import PROFILES, REPO_ROOT, effective, load, release

REPO = "fastship"
# skaffold tags a local build with its image ID (what kind then loads), e.g.
# fastship:8f3c...; a tag of 64 hex digits.
TAG = "8f3c1d" + "0" * 58
IMAGE = f"{REPO}:{TAG}"
# The local control plane's Kubernetes and the kind node image's (k8s/kind-config.yaml).
KUBE_VERSIONS = ("1.36.0", "1.37.0")


def render(helm: Path, profile: str | None, kube_version: str, tmp: Path) -> Rendered:
    config = effective(load(), profile)
    rel = release(config)
    cmd = [
        str(helm),
        "template",
        rel["name"],
        str(REPO_ROOT / rel["chartPath"]),
        "--namespace",
        rel["namespace"],
        "--kube-version",
        kube_version,
    ]
    for values in skaffoldcfg.helm_value_files(config, REPO, TAG, tmp):
        cmd += ["--values", str(values)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"helm template for profile {profile} failed:\n{proc.stderr}"
    return Rendered(parse_objects(proc.stdout))


def fastship_containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(obj) or {}
    both = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    return [c for c in both if c["image"] == IMAGE]


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p or "no-profile")
def test_profile_renders_valid_manifests(
    helm_bin: Path, tmp_path: Path, profile: str | None, kube_version: str
) -> None:
    rendered = render(helm_bin, profile, kube_version, tmp_path)
    assert rendered.objects
    for obj in rendered.objects:
        validate(obj, kube_version)

    # The built image runs every fastship role: server, wait-for-schema, operator, migrations.
    deployment = rendered.get("Deployment", "fastship")
    assert {c["name"] for c in fastship_containers(deployment)} >= {"server"}
    assert fastship_containers(rendered.get("Deployment", "fastship-operator"))
    assert rendered.get("Migration")["spec"]["image"] == IMAGE

    for obj in rendered.objects:
        if pod_spec(obj) is None:
            continue
        if profile == "dev":
            # The one relaxation of the dev profile: a writable root for file sync, in
            # the fastship containers only. Everything else "restricted" asks still holds.
            obj = copy.deepcopy(obj)
            for c in fastship_containers(obj):
                assert c["securityContext"]["readOnlyRootFilesystem"] is False, c["name"]
                c["securityContext"]["readOnlyRootFilesystem"] = True
        assert_restricted(obj)


def test_dev_profile_one_replica_no_hpa_debug_logs(helm_bin: Path, tmp_path: Path) -> None:
    rendered = render(helm_bin, "dev", KUBE_VERSIONS[-1], tmp_path)
    assert rendered.get("Deployment", "fastship")["spec"]["replicas"] == 1
    assert not rendered.has("HorizontalPodAutoscaler")
    assert rendered.get("AppConfig")["spec"]["settings"]["log_level"] == "DEBUG"


def test_prod_profile_hpa_from_two_replicas(helm_bin: Path, tmp_path: Path) -> None:
    rendered = render(helm_bin, "prod", KUBE_VERSIONS[-1], tmp_path)
    hpa = rendered.get("HorizontalPodAutoscaler", "fastship")
    assert hpa["spec"]["minReplicas"] == 2
    assert hpa["spec"]["maxReplicas"] > 2
    assert hpa["spec"]["scaleTargetRef"]["name"] == "fastship"
    # With the HPA on, the Deployment leaves the count to it.
    assert "replicas" not in rendered.get("Deployment", "fastship")["spec"]
    assert rendered.get("AppConfig")["spec"]["settings"]["log_level"] == "INFO"
    for c in fastship_containers(rendered.get("Deployment", "fastship")):
        assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_no_profile_is_the_charts_default_scale(helm_bin: Path, tmp_path: Path) -> None:
    rendered = render(helm_bin, None, KUBE_VERSIONS[-1], tmp_path)
    chart_defaults = yaml.safe_load((REPO_ROOT / "charts/fastship/values.yaml").read_text())
    assert chart_defaults["autoscaling"]["enabled"] is True
    assert "replicas" not in rendered.get("Deployment", "fastship")["spec"]
    hpa = rendered.get("HorizontalPodAutoscaler", "fastship")["spec"]
    assert hpa["minReplicas"] == chart_defaults["autoscaling"]["minReplicas"]
    assert hpa["maxReplicas"] == chart_defaults["autoscaling"]["maxReplicas"]


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p or "no-profile")
def test_port_forwards_reach_rendered_services(
    helm_bin: Path, tmp_path: Path, profile: str | None
) -> None:
    config = effective(load(), profile)
    rendered = render(helm_bin, profile, KUBE_VERSIONS[-1], tmp_path)
    for forward in config["portForward"]:
        service = rendered.get("Service", forward["resourceName"])
        ports = [p["port"] for p in service["spec"]["ports"]]
        assert forward["port"] in ports, (
            f"port-forward to service/{forward['resourceName']}:{forward['port']}, "
            f"which has ports {ports}"
        )
        # helm template leaves metadata.namespace to the release: the forward's
        # namespace must be the release's.
        assert forward["namespace"] == release(config)["namespace"]
    api = next(f for f in config["portForward"] if f["localPort"] == 8000)
    assert api["resourceName"] == rendered.get("Deployment", "fastship")["metadata"]["name"]
