"""AppConfig against the real API server of the local control plane."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.operator.conftest import Operator, events, get, items, wait_applied, wait_for
from tests.support.conditions import condition, condition_is
from tests.support.kube import Kube
from tests.support.manifests import deployment
from tests.support.waiting import wait_until

HASH = "fastship.dev/config-hash"
ANNOTATIONS = "/spec/template/metadata/annotations"


def appconfig(settings: dict[str, str], name: str = "app") -> dict[str, Any]:
    return {
        "apiVersion": "fastship.dev/v1alpha1",
        "kind": "AppConfig",
        "metadata": {"name": name},
        "spec": {"deploymentRef": {"name": "app"}, "settings": settings},
    }


def restricted_deployment() -> dict[str, Any]:
    """The target Deployment (pause containers), admissible under Pod Security restricted."""
    dep = deployment("app", replicas=2)
    pod = dep["spec"]["template"]["spec"]
    pod["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    for c in pod["containers"]:
        c["securityContext"] = {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsUser": 65532,
        }
        c["envFrom"] = [{"configMapRef": {"name": "app-config", "optional": True}}]
    return dep


def template_hash(dep: dict[str, Any] | None) -> str | None:
    annotations = ((dep or {})["spec"]["template"]["metadata"]).get("annotations") or {}
    return annotations.get(HASH)


def replicasets(kube: Kube, ns: str) -> set[str]:
    return {rs["metadata"]["name"] for rs in items(kube, "replicasets", ns, "app=app")}


def rolled_out(kube: Kube, ns: str) -> None:
    kube.kubectl("rollout", "status", "deployment/app", "-n", ns, "--timeout=90s")


def test_valid_config_is_applied_once(kube: Kube, operator: Operator) -> None:
    ns = operator.namespace
    kube.apply(restricted_deployment(), namespace=ns)
    rolled_out(kube, ns)
    before = replicasets(kube, ns)

    kube.apply(appconfig({"log_level": "DEBUG", "FASTSHIP_DOCS_ENABLED": "false"}), namespace=ns)
    applied = wait_applied(kube, ns, "AppConfig Applied")
    status = applied["status"]
    assert condition(applied, "Valid")["status"] == "True"
    assert status["configMapName"] == "app-config"
    assert status["observedGeneration"] == applied["metadata"]["generation"]
    assert status["appliedAt"]

    cm = get(kube, "configmap", "app-config", ns)
    assert cm is not None
    assert cm["data"] == {"FASTSHIP_LOG_LEVEL": "DEBUG", "FASTSHIP_DOCS_ENABLED": "false"}
    owner = cm["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"]) == ("AppConfig", applied["metadata"]["uid"])

    dep = get(kube, "deployment", "app", ns)
    assert template_hash(dep) == status["configHash"]
    rolled_out(kube, ns)
    after_first = replicasets(kube, ns)
    assert len(after_first - before) == 1, "the annotation rolled the pods once"
    generation = dep["metadata"]["generation"] if dep else None
    shown = kube.kubectl("get", "appconfigs", "-n", ns).stdout
    assert shown.split("\n")[0].split() == ["NAME", "READY", "VALID", "HASH", "AGE"]
    assert status["configHash"] in shown

    # The same spec again, and a metadata-only change: nothing is written, nothing rolls.
    cm_version = cm["metadata"]["resourceVersion"]
    kube.apply(appconfig({"log_level": "DEBUG", "FASTSHIP_DOCS_ENABLED": "false"}), namespace=ns)
    kube.kubectl("label", "appconfig", "app", "-n", ns, "touched=yes")
    time.sleep(3)  # the operator reacts within milliseconds; give it ample time to misbehave
    dep = get(kube, "deployment", "app", ns)
    assert dep is not None
    assert dep["metadata"]["generation"] == generation
    assert replicasets(kube, ns) == after_first
    cm_again = get(kube, "configmap", "app-config", ns)
    assert cm_again is not None
    assert cm_again["metadata"]["resourceVersion"] == cm_version
    same = get(kube, "appconfig", "app", ns)
    assert same is not None
    assert same["status"] == status

    # A changed value: new data, new hash, one more rollout.
    kube.apply(appconfig({"log_level": "WARNING", "FASTSHIP_DOCS_ENABLED": "false"}), namespace=ns)
    changed = wait_for(
        kube,
        "appconfig",
        "app",
        ns,
        lambda a: a["status"].get("configHash") not in (None, status["configHash"]),
        "the new config hash",
    )
    dep = get(kube, "deployment", "app", ns)
    assert template_hash(dep) == changed["status"]["configHash"]
    cm = get(kube, "configmap", "app-config", ns)
    assert cm is not None
    assert cm["data"]["FASTSHIP_LOG_LEVEL"] == "WARNING"
    assert any(e["reason"] == "Applied" for e in events(kube, ns, "app"))

    # The annotation is put back when something removes it (a helm upgrade, a kubectl edit).
    kube.kubectl(
        "patch",
        "deployment",
        "app",
        "-n",
        ns,
        "--type=json",
        "-p",
        json.dumps([{"op": "remove", "path": f"{ANNOTATIONS}/fastship.dev~1config-hash"}]),
    )
    wait_until(
        lambda: (
            template_hash(get(kube, "deployment", "app", ns)) == changed["status"]["configHash"]
        ),
        timeout=30,
        interval=0.25,
        what="the operator to restore the config-hash annotation",
    )

    # Deleting the AppConfig removes its ConfigMap (garbage collector).
    kube.kubectl("delete", "appconfig", "app", "-n", ns, "--wait=true", "--timeout=60s")
    wait_until(
        lambda: get(kube, "configmap", "app-config", ns) is None,
        timeout=60,
        interval=0.5,
        what="the garbage collector to delete ConfigMap app-config",
    )


def test_invalid_config_changes_nothing(kube: Kube, operator: Operator) -> None:
    ns = operator.namespace
    kube.apply(restricted_deployment(), namespace=ns)
    rolled_out(kube, ns)
    dep_before = get(kube, "deployment", "app", ns)
    assert dep_before is not None

    kube.apply(
        appconfig(
            {
                "log_level": "LOUD",
                "port": "not-a-number",
                "no_such_setting": "1",
                "jwt_secret_key": "x" * 48,
            }
        ),
        namespace=ns,
    )
    invalid = wait_for(
        kube,
        "appconfig",
        "app",
        ns,
        condition_is("Valid", status="False"),
        "AppConfig Valid=False",
    )
    valid = condition(invalid, "Valid")
    assert valid["reason"] == "InvalidSettings"
    message = valid["message"]
    assert message.startswith("4 problem(s)")
    for part in ("log_level", "port", "no_such_setting: unknown setting", "jwt_secret_key"):
        assert part in message, message
    assert "is a secret: set FASTSHIP_JWT_SECRET_KEY from a Kubernetes Secret" in message
    assert "x" * 48 not in message, "a refused secret value is never echoed"
    assert condition(invalid, "Applied")["status"] == "False"
    assert "configHash" not in invalid["status"]

    time.sleep(2)
    dep_after = get(kube, "deployment", "app", ns)
    assert dep_after is not None
    assert dep_after["metadata"]["generation"] == dep_before["metadata"]["generation"]
    assert template_hash(dep_after) is None
    assert get(kube, "configmap", "app-config", ns) is None
    warnings = [e for e in events(kube, ns, "app") if e["type"] == "Warning"]
    assert any(e["reason"] == "InvalidSettings" for e in warnings)

    # Fixing it applies it.
    kube.apply(appconfig({"log_level": "ERROR"}), namespace=ns)
    wait_applied(kube, ns, "the fixed AppConfig Applied")
    assert template_hash(get(kube, "deployment", "app", ns))


def test_secret_field_alone_is_refused(kube: Kube, operator: Operator) -> None:
    ns = operator.namespace
    kube.apply(restricted_deployment(), namespace=ns)
    kube.apply(
        appconfig({"FASTSHIP_DATABASE_URL": "postgresql://app:hunter2@db:5432/app"}),
        namespace=ns,
    )
    invalid = wait_for(
        kube,
        "appconfig",
        "app",
        ns,
        condition_is("Valid", status="False"),
        "AppConfig with a secret refused",
    )
    message = condition(invalid, "Valid")["message"]
    assert "FASTSHIP_DATABASE_URL: is a secret" in message
    assert "hunter2" not in json.dumps(invalid["status"])
    assert get(kube, "configmap", "app-config", ns) is None


def test_missing_deployment_is_applied_when_it_appears(kube: Kube, operator: Operator) -> None:
    ns = operator.namespace
    kube.apply(appconfig({"log_level": "DEBUG"}), namespace=ns)
    waiting = wait_for(
        kube,
        "appconfig",
        "app",
        ns,
        condition_is("Applied", reason="DeploymentNotFound"),
        "Applied=False DeploymentNotFound",
    )
    assert condition(waiting, "Valid")["status"] == "True"
    kube.apply(restricted_deployment(), namespace=ns)
    applied = wait_applied(kube, ns, "Applied once the Deployment exists")
    assert template_hash(get(kube, "deployment", "app", ns)) == applied["status"]["configHash"]


def test_invalid_appconfig_rejected_by_the_api_server(kube: Kube, crds: None) -> None:
    ns = kube.create_namespace()
    try:
        bad_key = appconfig({"log level": "DEBUG"})
        proc = kube.apply(bad_key, namespace=ns, check=False)
        assert proc.returncode != 0
        assert "setting names are identifiers" in proc.stderr, proc.stderr
        no_ref = appconfig({})
        del no_ref["spec"]["deploymentRef"]
        proc = kube.apply(no_ref, namespace=ns, check=False)
        assert proc.returncode != 0
        assert "spec.deploymentRef: Required value" in proc.stderr, proc.stderr
    finally:
        kube.delete_namespace(ns)
