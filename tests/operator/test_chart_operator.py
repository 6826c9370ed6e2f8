"""The chart's operator parts, rendered with helm: what reaches the operator's pod, the
migration Job's spec and the RBAC objects, and that the operator admits the chart's own
Migration and AppConfig (the same pure functions decide as in the cluster)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from fastship_operator import appconfigs as ac
from fastship_operator import migrations as mg
from tests.chart.cases import MATRIX
from tests.chart.conftest import RELEASE, Rendered, parse_objects, run_template
from tests.support.kube import tools_bin

FULLNAME = f"{RELEASE}-fastship"
Render = Callable[..., Rendered]


@pytest.fixture
def render(tmp_path: Path) -> Render:
    helm = tools_bin() / "helm"
    if not os.access(helm, os.X_OK):
        pytest.fail(f"helm not found at {helm}: run `make tools`", pytrace=False)

    def _render(values: Mapping[str, Any] | None = None) -> Rendered:
        proc = run_template(helm, values, tmp_path)
        assert proc.returncode == 0, proc.stderr
        return Rendered(parse_objects(proc.stdout))

    return _render


def env_of(container: Mapping[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or ()}


def test_the_operator_pod_is_scoped_to_its_release_and_probed_for_readiness(
    render: Render,
) -> None:
    rendered = render()
    dep = rendered.get("Deployment", f"{FULLNAME}-operator")
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    env = env_of(container)
    assert env["FASTSHIP_OPERATOR_INSTANCE"] == RELEASE
    assert env["FASTSHIP_OPERATOR_METRICS"] == "0.0.0.0:8081"
    assert "FASTSHIP_OPERATOR_ALLOWED_IMAGES" not in env
    assert {"name": "metrics", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    service = rendered.get("Service", f"{FULLNAME}-operator-metrics")
    assert (
        service["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    )
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    policy = rendered.get("NetworkPolicy", f"{FULLNAME}-operator")
    ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert "metrics" in ports
    # The chart's own objects carry the release label the operator selects by.
    for kind in ("Migration", "AppConfig"):
        labels = rendered.get(kind, FULLNAME)["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE


def test_view_and_edit_aggregate_the_two_kinds(render: Render) -> None:
    roles = {r["metadata"]["name"]: r for r in render().all("ClusterRole")}
    view = roles[f"apps-{FULLNAME}-fastship-view"]
    edit = roles[f"apps-{FULLNAME}-fastship-edit"]
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in edit["metadata"]["labels"]
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    for role, verbs in ((view, {"get", "list", "watch"}), (edit, {"create", "patch", "delete"})):
        (rule,) = role["rules"]
        assert {"migrations", "appconfigs"} <= set(rule["resources"])
        assert verbs <= set(rule["verbs"])
    assert not render({"operator": {"aggregateClusterRoles": False}}).has("ClusterRole")


def test_private_registry_and_constrained_nodes_reach_the_migration(render: Render) -> None:
    toleration = {"key": "batch", "operator": "Exists", "effect": "NoSchedule"}
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["b"]}]}
                ]
            }
        }
    }
    rendered = render(
        {
            "imagePullSecrets": [{"name": "regcred"}],
            "migrations": {
                "nodeSelector": {"pool": "b"},
                "tolerations": [toleration],
                "affinity": affinity,
                "priorityClassName": "batch-high",
            },
            "operator": {"allowedImages": ["registry.example.com/fastship:*", "mirror/*"]},
            "metrics": {"serviceMonitor": {"enabled": True}},
        }
    )
    spec = rendered.get("Migration", FULLNAME)["spec"]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["nodeSelector"] == {"pool": "b"}
    assert spec["tolerations"] == [toleration]
    assert spec["affinity"] == affinity
    assert spec["priorityClassName"] == "batch-high"
    for account in (FULLNAME, f"{FULLNAME}-operator"):
        sa = rendered.get("ServiceAccount", account)
        assert sa["imagePullSecrets"] == [{"name": "regcred"}], account
    # The Job the operator builds from that spec.
    job_pod = mg.build_job(
        {"metadata": {"name": FULLNAME, "namespace": "apps", "uid": "u"}, "spec": spec},
        mg.parse_spec(spec),
    )["spec"]["template"]["spec"]
    assert job_pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert job_pod["serviceAccountName"] == FULLNAME
    assert (job_pod["nodeSelector"], job_pod["priorityClassName"]) == ({"pool": "b"}, "batch-high")
    operator = rendered.get("Deployment", f"{FULLNAME}-operator")
    env = env_of(operator["spec"]["template"]["spec"]["containers"][0])
    assert env["FASTSHIP_OPERATOR_ALLOWED_IMAGES"] == "registry.example.com/fastship:*,mirror/*"
    monitors = {m["metadata"]["name"]: m for m in rendered.all("ServiceMonitor")}
    monitor = monitors[f"{FULLNAME}-operator"]["spec"]
    assert monitor["endpoints"][0]["port"] == "metrics"
    service = rendered.get("Service", f"{FULLNAME}-operator-metrics")
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


@pytest.mark.parametrize(
    "case",
    sorted(c for c, v in MATRIX.items() if v.get("migrations", {}).get("mode") == "operator"),
)
def test_the_operator_admits_the_charts_own_migration(render: Render, case: str) -> None:
    rendered = render(MATRIX[case])
    migration = rendered.get("Migration", FULLNAME)
    deployment = rendered.get("Deployment", FULLNAME)
    job_spec = mg.parse_spec(migration["spec"])
    assert mg.admission_problem(job_spec, FULLNAME, deployment, ()) is None


def test_the_charts_appconfig_fits_its_deployment(render: Render) -> None:
    rendered = render({"config": {"log_level": "DEBUG"}})
    appconfig = rendered.get("AppConfig", FULLNAME)
    deployment = rendered.get("Deployment", FULLNAME)
    validation = ac.validate(appconfig["spec"])
    assert validation.valid, validation.problems
    checked = ac.check_against_deployment(FULLNAME, validation.data, deployment, [FULLNAME])
    assert checked.valid, checked.problems
    # The chart sets the port in the server's env: an AppConfig cannot change it.
    port = ac.check_against_deployment(FULLNAME, {"FASTSHIP_PORT": "9000"}, deployment, [])
    assert port.reason == "ConflictsWithDeployment"
    assert "FASTSHIP_PORT: container server" in port.problems[0]


def test_no_fixed_ids_for_platforms_that_assign_them(render: Render) -> None:
    """OpenShift's restricted-v2 assigns user and group ids per namespace and refuses pods
    that ask for others: with the chart's ids unset, no fastship pod asks for any."""
    unset = {"runAsUser": None, "runAsGroup": None}
    rendered = render(
        {
            "podSecurityContext": {**unset, "fsGroup": None},
            "securityContext": unset,
            "postgresql": {"mode": "external", "external": {"existingSecret": "db"}},
        }
    )
    migration = rendered.get("Migration", FULLNAME)
    job = mg.build_job(
        {**migration, "metadata": {"name": FULLNAME, "namespace": "apps", "uid": "u"}},
        mg.parse_spec(migration["spec"]),
    )
    pods = [d["spec"]["template"]["spec"] for d in rendered.all("Deployment")]
    pods.append(job["spec"]["template"]["spec"])
    for pod in pods:
        contexts = [pod.get("securityContext") or {}] + [
            c.get("securityContext") or {}
            for c in [*(pod.get("initContainers") or ()), *pod["containers"]]
        ]
        for context in contexts:
            assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(context), context
        assert pod["securityContext"]["runAsNonRoot"] is True
