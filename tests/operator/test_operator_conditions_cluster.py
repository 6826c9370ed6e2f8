"""The operator under the conditions of a shared, real cluster, against the API server of
the local control plane: competing AppConfigs, settings the Deployment overrides or that
would break its pods, an edited or deleted ConfigMap, two releases in one namespace, a
Migration that asks for an image its Deployment does not run, metrics and readiness."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.operator.conftest import Operator, get, wait_applied, wait_for
from tests.operator.harness import OPERATOR_SA, bind_operator_role
from tests.operator.test_appconfig_cluster import (
    appconfig,
    restricted_deployment,
    template_hash,
)
from tests.operator.test_migration_cluster import IMAGE, migration, phase_is
from tests.support.conditions import condition, condition_is
from tests.support.kube import Kube
from tests.support.waiting import free_port, wait_until

INSTANCE = "app.kubernetes.io/instance"


def loading(dep: dict[str, Any], *configmaps: str) -> dict[str, Any]:
    """``dep`` with every container loading these ConfigMaps too."""
    for c in dep["spec"]["template"]["spec"]["containers"]:
        c["envFrom"] += [{"configMapRef": {"name": n, "optional": True}} for n in configmaps]
    return dep


def test_a_second_appconfig_on_one_deployment_is_refused_naming_the_first(
    kube: Kube, operator: Operator
) -> None:
    ns = operator.namespace
    kube.apply(loading(restricted_deployment(), "second-config"), namespace=ns)
    kube.apply(appconfig({"log_level": "DEBUG"}), namespace=ns)
    first = wait_applied(kube, ns, "the first AppConfig Applied")
    # A later creationTimestamp (seconds precision): the clock past the first's second.
    created = datetime.fromisoformat(first["metadata"]["creationTimestamp"])
    wait_until(
        lambda: datetime.now(UTC) >= created + timedelta(seconds=1),
        timeout=5,
        interval=0.05,
        what="the next second of the clock",
    )
    kube.apply(appconfig({"log_level": "WARNING"}, name="second"), namespace=ns)

    second = wait_for(
        kube,
        "appconfig",
        "second",
        ns,
        condition_is("Applied", reason="DeploymentClaimed"),
        "refused",
    )
    message = condition(second, "Applied")["message"]
    assert "configured by AppConfig app" in message, message
    assert condition(second, "Ready")["status"] == "False"
    assert condition(second, "Stalled")["status"] == "True"
    assert get(kube, "configmap", "second-config", ns) is None
    # No flip-flopping: the Deployment keeps the first AppConfig's hash.
    for _ in range(6):
        assert template_hash(get(kube, "deployment", "app", ns)) == first["status"]["configHash"]
        time.sleep(0.5)
    assert condition(get(kube, "appconfig", "app", ns), "Ready")["status"] == "True"

    # The first goes: the second configures the Deployment now.
    kube.kubectl("delete", "appconfig", "app", "-n", ns)
    taken = wait_applied(kube, ns, "the second AppConfig takes over", name="second")
    assert template_hash(get(kube, "deployment", "app", ns)) == taken["status"]["configHash"]


def test_settings_that_cannot_take_effect_or_break_pods_are_refused(
    kube: Kube, operator: Operator
) -> None:
    ns = operator.namespace
    dep = restricted_deployment()
    (server, *_) = dep["spec"]["template"]["spec"]["containers"]
    server["env"] = [
        {"name": "FASTSHIP_PORT", "value": "8000"},
        {"name": "FASTSHIP_ENVIRONMENT", "value": "production"},
        {
            "name": "FASTSHIP_DATABASE_URL",
            "valueFrom": {"secretKeyRef": {"name": "app-db", "key": "uri"}},
        },
        {
            "name": "FASTSHIP_JWT_SECRET_KEY",
            "valueFrom": {"secretKeyRef": {"name": "app-jwt", "key": "key"}},
        },
    ]
    kube.apply(dep, namespace=ns)
    kube.apply(appconfig({"log_level": "DEBUG"}), namespace=ns)
    good = wait_applied(kube, ns, "a setting the Deployment leaves to the ConfigMap")
    # kstatus: Ready True, neither reconciling nor stalled, at the current generation.
    for type_, value in (("Ready", "True"), ("Reconciling", "False"), ("Stalled", "False")):
        cond = condition(good, type_)
        assert cond["status"] == value, (type_, cond)
        assert cond["observedGeneration"] == good["metadata"]["generation"]
    applied_hash = good["status"]["configHash"]

    cases = {
        # env wins over envFrom: the value would never reach the process
        "port": ({"port": "9000"}, "FASTSHIP_PORT: container"),
        "environment": ({"environment": "test"}, "sets it in env, which overrides"),
        # with the URL from the Secret, the service refuses to start: every new pod exits 2
        "database_host": (
            {"database_host": "db.example"},
            "set either FASTSHIP_DATABASE_URL or FASTSHIP_DATABASE_HOST, not both",
        ),
    }
    for what, (settings, expected) in cases.items():
        kube.apply(appconfig({"log_level": "DEBUG", **settings}), namespace=ns)
        refused = wait_for(
            kube,
            "appconfig",
            "app",
            ns,
            lambda o: (
                condition(o, "Valid").get("reason") == "ConflictsWithDeployment"
                and condition(o, "Valid").get("observedGeneration") == o["metadata"]["generation"]
            ),
            f"{what} refused",
        )
        assert expected in condition(refused, "Valid")["message"], what
        assert condition(refused, "Applied")["reason"] == "ConflictsWithDeployment"
        assert condition(refused, "Ready")["status"] == "False"
        assert condition(refused, "Stalled")["status"] == "True"
        assert refused["status"]["configHash"] == applied_hash
        assert template_hash(get(kube, "deployment", "app", ns)) == applied_hash

    # auto_migrate is fine until a Migration gates the Deployment; then it is refused.
    kube.apply(appconfig({"log_level": "DEBUG", "auto_migrate": "true"}), namespace=ns)
    wait_applied(kube, ns, "auto_migrate without a Migration")
    kube.apply(migration(), namespace=ns)
    # A Deployment change (here: its spec) makes the operator look at its AppConfig again.
    kube.kubectl(
        "annotate", "appconfig", "app", "-n", ns, "touch=1", "--overwrite"
    )  # metadata only: no new generation, but an event
    kube.apply(appconfig({"log_level": "INFO", "auto_migrate": "true"}), namespace=ns)
    gated = wait_for(
        kube,
        "appconfig",
        "app",
        ns,
        condition_is("Valid", reason="ConflictsWithDeployment"),
        "gated",
    )
    assert "Migration app gates Deployment app" in condition(gated, "Valid")["message"]


def test_an_edited_or_deleted_configmap_is_repaired(kube: Kube, operator: Operator) -> None:
    ns = operator.namespace
    kube.apply(restricted_deployment(), namespace=ns)
    kube.apply(appconfig({"log_level": "DEBUG"}), namespace=ns)
    wait_applied(kube, ns, "applied")
    wanted = {"FASTSHIP_LOG_LEVEL": "DEBUG"}

    kube.kubectl(
        "patch", "configmap", "app-config", "-n", ns, "--type=merge",
        "-p", '{"data": {"FASTSHIP_LOG_LEVEL": "ERROR", "FASTSHIP_DOCS_ENABLED": "false"}}',
    )  # fmt: skip
    wait_for(kube, "configmap", "app-config", ns, lambda cm: cm["data"] == wanted, "edit undone")

    kube.kubectl("delete", "configmap", "app-config", "-n", ns)
    repaired = wait_for(
        kube, "configmap", "app-config", ns, lambda cm: cm["data"] == wanted, "recreated"
    )
    assert repaired["metadata"]["ownerReferences"][0]["kind"] == "AppConfig"


def release_objects(release: str) -> list[dict[str, Any]]:
    """Deployment, AppConfig and Migration of one release, labelled as the chart does."""
    dep = restricted_deployment()
    dep["metadata"]["name"] = f"{release}-app"
    dep["spec"]["selector"]["matchLabels"] = {"app": f"{release}-app"}
    dep["spec"]["template"]["metadata"]["labels"] = {"app": f"{release}-app"}
    loading(dep, f"{release}-config")
    config = appconfig({"log_level": "DEBUG" if release == "blue" else "WARNING"}, name=release)
    config["spec"]["deploymentRef"]["name"] = f"{release}-app"
    config["metadata"]["labels"] = {INSTANCE: release}
    mig = migration(f"{release}-mig")
    mig["metadata"]["labels"] = {INSTANCE: release}
    return [dep, config, mig]


def test_each_operator_reconciles_only_its_own_release(
    kube: Kube, operator: Operator, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = operator.namespace
    operator.restart(FASTSHIP_OPERATOR_INSTANCE="blue")
    kube.apply(release_objects("blue"), namespace=ns)
    kube.apply(release_objects("green"), namespace=ns)
    blue = wait_applied(kube, ns, "blue's AppConfig applied", name="blue")
    wait_for(kube, "migration", "blue-mig", ns, phase_is("Succeeded"), "blue's Migration")
    time.sleep(3)  # time enough for a wrong reconcile of green's objects
    green = get(kube, "appconfig", "green", ns)
    assert green is not None
    assert not green.get("status"), green
    green_mig = get(kube, "migration", "green-mig", ns)
    assert green_mig is not None
    assert not green_mig.get("status"), green_mig
    assert get(kube, "configmap", "green-config", ns) is None
    assert template_hash(get(kube, "deployment", "green-app", ns)) is None
    jobs = [j["metadata"]["name"] for j in kube.get("jobs", namespace=ns)["items"]]
    assert not [j for j in jobs if j.startswith("green")], jobs

    # green's own operator, next to blue's: each configures its own, nothing flips.
    green_operator = Operator(ns, operator.kubeconfig, monkeypatch)
    green_operator.env.update(FASTSHIP_OPERATOR_INSTANCE="green")
    green_operator.start()
    try:
        green = wait_applied(kube, ns, "green's AppConfig applied", name="green")
        wait_for(kube, "migration", "green-mig", ns, phase_is("Succeeded"), "green's Migration")
        for _ in range(6):
            for release, config in (("blue", blue), ("green", green)):
                dep = get(kube, "deployment", f"{release}-app", ns)
                assert template_hash(dep) == config["status"]["configHash"], release
            time.sleep(0.5)
        assert get(kube, "appconfig", "blue", ns)["status"] == blue["status"]  # type: ignore[index]
    finally:
        green_operator.stop()
    # green's operator sees blue's objects in its watches, and leaves them alone.
    for line in ("AppConfig blue:", "Migration blue-mig:", "for Migration blue-mig"):
        assert line not in green_operator.output
    assert "AppConfig green:" in green_operator.output


def test_a_migration_runs_only_the_image_of_the_deployment_it_gates(
    kube: Kube, operator: Operator
) -> None:
    ns = operator.namespace
    operator.restart(FASTSHIP_OPERATOR_ALLOWED_IMAGES="")
    kube.apply(migration(), namespace=ns)
    refused = wait_for(
        kube,
        "migration",
        "app",
        ns,
        condition_is("Ready", reason="ImageNotAllowed"),
        "no Deployment yet",
    )
    assert "waiting for Deployment app" in refused["status"]["message"]

    dep = restricted_deployment()
    kube.apply(dep, namespace=ns)  # runs pause, not the Migration's image
    other = wait_for(
        kube,
        "migration",
        "app",
        ns,
        lambda m: "is not an image of Deployment app" in (m.get("status") or {}).get("message", ""),
        "another image",
    )
    assert IMAGE in other["status"]["message"]
    assert kube.get("jobs", namespace=ns)["items"] == []

    for c in dep["spec"]["template"]["spec"]["containers"]:
        c["image"] = IMAGE
        c["env"] = [
            {
                "name": "FASTSHIP_DATABASE_URL",
                "valueFrom": {"secretKeyRef": {"name": "app-db", "key": "uri"}},
            }
        ]
    kube.apply(dep, namespace=ns)
    wait_for(kube, "migration", "app", ns, phase_is("Succeeded"), "admitted and migrated", 90)


def test_metrics_and_readiness_on_their_own_port(kube: Kube, operator: Operator) -> None:
    ns = operator.namespace
    port = free_port()
    operator.restart(FASTSHIP_OPERATOR_METRICS=f"127.0.0.1:{port}")
    base = f"http://127.0.0.1:{port}"

    def fetch(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(base + path, timeout=10) as response:  # noqa: S310
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    wait_until(lambda: fetch("/readyz")[0] == 200, timeout=30, what="ready")
    kube.apply(restricted_deployment(), namespace=ns)
    kube.apply(appconfig({"log_level": "DEBUG"}), namespace=ns)
    kube.apply(migration(), namespace=ns)
    wait_applied(kube, ns, "applied")
    wait_for(kube, "migration", "app", ns, phase_is("Succeeded"), "migrated")

    def scraped() -> str | None:
        status, text = fetch("/metrics")
        ok = status == 200 and 'fastship_operator_migration_jobs_total{outcome="Succeeded"}' in text
        return text if ok else None

    text = wait_until(scraped, timeout=30, what="metrics of the finished Job")
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['fastship_operator_reconciles_total{kind="appconfig",result="ok"}'] >= 1
    assert samples['fastship_operator_reconciles_total{kind="migration",result="ok"}'] >= 1
    assert samples['fastship_operator_migration_jobs_total{outcome="Succeeded"}'] >= 1
    assert samples["fastship_operator_jobs_created_total"] >= 1
    assert samples["fastship_operator_config_rollouts_total"] >= 1
    assert samples["fastship_operator_config_apply_seconds_count"] >= 1

    # Readiness means the API answers the operator's own requests: without its Role's
    # binding it does not, and /readyz says so.
    operator.expect_forbidden = True
    kube.kubectl("delete", "rolebinding", OPERATOR_SA, "-n", ns)
    try:
        _, reason = wait_until(
            lambda: (r := fetch("/readyz"))[0] == 503 and r, timeout=30, what="not ready"
        )
        assert "does not answer the operator's lists" in reason
    finally:
        bind_operator_role(kube, ns)
    wait_until(lambda: fetch("/readyz")[0] == 200, timeout=30, what="ready again")
