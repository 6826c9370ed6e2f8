"""A real `helm install` into the local control plane, under Pod Security "restricted".

The API server, admission (Pod Security), the Deployment, ReplicaSet, StatefulSet and HPA
controllers and the scheduler are the real ones. kwok runs no containers: it marks pods
Running, so the one thing a container would decide, the exit of the `helm test` Pod, is
written into the Pod's status by the test, as the kubelet would after the container
exited. The operator is not running here (tests/operator/ runs it against this chart).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from tests.chart.conftest import CHART
from tests.chart.secretsjob import run_as_job
from tests.support.kube import Kube
from tests.support.waiting import wait_until

RELEASE = "web"
# The last commit whose chart rendered the generated Secrets itself (with `lookup`).
OLD_CHART_COMMIT = "3a144b631ec66923feb4bdc9a21418b6735b82df"
FULLNAME = f"{RELEASE}-fastship"
INSTANCE = f"app.kubernetes.io/instance={RELEASE}"
SERVER = f"{INSTANCE},app.kubernetes.io/component=server"
HPA_REPLICAS = 3
VALUES = [
    "--set",
    "autoscaling.enabled=true",
    "--set",
    f"autoscaling.minReplicas={HPA_REPLICAS}",
    "--set",
    f"autoscaling.maxReplicas={HPA_REPLICAS}",
    "--set",
    "config.log_level=DEBUG",
]


def helm(kube: Kube, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return kube.helm(*args, "--namespace", ns, check=check)


def install(kube: Kube, ns: str, *extra: str) -> str:
    return helm(kube, ns, "upgrade", "--install", RELEASE, str(CHART), *VALUES, *extra).stdout


def generate_secrets(kube: Kube, ns: str, *extra: str) -> None:
    """What the pre-install hook Job's pod does on a real node: create the missing Secrets.

    The Job's ServiceAccount, Role and RoleBinding come from the chart's own render (the
    hook deletes and recreates them when the release installs)."""
    rendered = helm(
        kube, ns, "template", RELEASE, str(CHART), *VALUES, *extra,
        "--show-only", "templates/secrets-job.yaml", "--kube-version", kube.version,
    ).stdout  # fmt: skip
    objects = [d for d in yaml.safe_load_all(rendered) if d]
    kube.apply([o for o in objects if o["kind"] in {"ServiceAccount", "Role", "RoleBinding"}])
    job = next(o for o in objects if o["kind"] == "Job")
    proc = run_as_job(kube, ns, job)
    assert proc.returncode == 0, proc.stderr


def manifest_objects(kube: Kube, ns: str) -> list[dict[str, Any]]:
    text = helm(kube, ns, "get", "manifest", RELEASE).stdout
    return [d for d in yaml.safe_load_all(text) if d]


def pods(kube: Kube, ns: str, selector: str) -> list[dict[str, Any]]:
    return list(kube.get("pods", namespace=ns, selector=selector)["items"])


def secret_value(kube: Kube, ns: str, name: str, key: str) -> str:
    data = kube.get("secret", name, namespace=ns)["data"]
    return base64.b64decode(data[key]).decode()


def set_pod_exit(kube: Kube, ns: str, name: str, exit_code: int) -> None:
    """What the kubelet writes when the Pod's only container exits."""
    pod = kube.get("pod", name, namespace=ns)
    container = pod["spec"]["containers"][0]
    terminated = {
        "exitCode": exit_code,
        "reason": "Completed" if exit_code == 0 else "Error",
        "startedAt": pod["metadata"]["creationTimestamp"],
        "finishedAt": pod["metadata"]["creationTimestamp"],
    }
    status = {
        "status": {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container["image"],
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": terminated},
                }
            ],
        }
    }
    kube.kubectl(
        "patch", "pod", name, "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps(status),
    )  # fmt: skip


def on_kwok_node(kube: Kube, pod: dict[str, Any]) -> bool:
    node = kube.get("node", pod["spec"]["nodeName"])
    return bool(node["metadata"].get("annotations", {}).get("kwok.x-k8s.io/node") == "fake")


def run_helm_test(kube: Kube, ns: str, exit_code: int) -> subprocess.CompletedProcess[str]:
    """`helm test`, with the test Pod's container exiting with ``exit_code`` on kwok."""
    result: dict[str, subprocess.CompletedProcess[str]] = {}

    def run() -> None:
        result["proc"] = helm(kube, ns, "test", RELEASE, "--timeout", "120s", check=False)

    thread = threading.Thread(target=run)
    thread.start()
    name = f"{FULLNAME}-test-readyz"

    def running() -> dict[str, Any] | None:
        found = [p for p in pods(kube, ns, INSTANCE) if p["metadata"]["name"] == name]
        return found[0] if found and found[0]["status"].get("phase") == "Running" else None

    pod = wait_until(running, timeout=60, interval=0.5, what="the helm test Pod to run")
    if on_kwok_node(kube, pod):
        set_pod_exit(kube, ns, name, exit_code)
    thread.join(timeout=180)
    assert "proc" in result, "helm test did not return"
    return result["proc"]


def remaining(kube: Kube, ns: str) -> list[str]:
    """Every namespaced object of the release still in the namespace, as kind/name."""
    kinds = kube.kubectl("api-resources", "--verbs=list", "--namespaced", "-o", "name").stdout
    wanted = ",".join(k for k in kinds.split() if k not in {"events", "events.events.k8s.io"})
    found = kube.get(wanted, namespace=ns, selector=INSTANCE)["items"]
    return sorted(f"{o['kind']}/{o['metadata']['name']}" for o in found)


def test_install_upgrade_test_uninstall(kube: Kube, restricted_namespace: str) -> None:
    ns = restricted_namespace
    generate_secrets(kube, ns)
    notes = install(kube, ns)
    # NOTES.txt: how to reach the service and log in.
    assert f"kubectl -n {ns} port-forward service/{FULLNAME} 8000:80" in notes
    assert "python -m app create-admin" in notes
    assert "/api/v1/auth/token" in notes

    # Every object of the release was accepted by the API server and admission.
    objects = manifest_objects(kube, ns)
    counts = Counter(o["kind"] for o in objects)
    for obj in objects:
        kube.kubectl("get", obj["kind"], obj["metadata"]["name"], "-n", ns)
    sys.stderr.write(f"\n[chart] objects of a default install with the HPA on: {dict(counts)}\n")
    assert counts["Deployment"] == 2
    assert counts["HorizontalPodAutoscaler"] == 1
    assert counts["StatefulSet"] == 1
    assert counts["Migration"] == 1
    assert counts["AppConfig"] == 1
    for crd in ("migrations.fastship.dev", "appconfigs.fastship.dev"):
        kube.kubectl("get", "crd", crd)

    # Pods are created under "restricted": the HPA's replicas of the service, the
    # operator and Postgres (a rejected pod would leave its controller with none).
    def server_pods() -> list[dict[str, Any]] | None:
        found = [p for p in pods(kube, ns, SERVER) if p["status"].get("phase") == "Running"]
        return found if len(found) == HPA_REPLICAS else None

    before = wait_until(server_pods, timeout=120, what=f"{HPA_REPLICAS} running server pods")
    wait_until(
        lambda: pods(kube, ns, f"{INSTANCE},app.kubernetes.io/component=operator"),
        timeout=60,
        what="the operator pod",
    )
    wait_until(
        lambda: pods(kube, ns, f"{INSTANCE},app.kubernetes.io/component=postgresql"),
        timeout=60,
        what="the Postgres pod",
    )
    deploy = kube.get("deployment", FULLNAME, namespace=ns)
    assert deploy["spec"]["replicas"] == HPA_REPLICAS  # set by the HPA, not by the chart
    jwt = secret_value(kube, ns, f"{FULLNAME}-jwt", "jwt-secret-key")
    password = secret_value(kube, ns, f"{FULLNAME}-postgresql", "password")

    # An upgrade keeps the HPA's count and the generated secrets, and rolls no pod.
    install(kube, ns, "--set", "service.annotations.example\\.com/owner=team")
    deploy = json.loads(
        kube.kubectl(
            "get", "deployment", FULLNAME, "-n", ns, "-o", "json", "--show-managed-fields"
        ).stdout
    )
    assert deploy["spec"]["replicas"] == HPA_REPLICAS
    helm_fields = [
        f
        for f in deploy["metadata"]["managedFields"]
        if f.get("manager") == "helm" and "f:replicas" in json.dumps(f.get("fieldsV1", {}))
    ]
    assert helm_fields == [], "helm owns spec.replicas of the Deployment"
    assert secret_value(kube, ns, f"{FULLNAME}-jwt", "jwt-secret-key") == jwt
    assert secret_value(kube, ns, f"{FULLNAME}-postgresql", "password") == password
    after = pods(kube, ns, SERVER)
    assert sorted(p["metadata"]["uid"] for p in after) == sorted(
        p["metadata"]["uid"] for p in before
    ), "the upgrade replaced server pods"
    assert kube.get("service", FULLNAME, namespace=ns)["metadata"]["annotations"] == {
        "example.com/owner": "team",
        "meta.helm.sh/release-name": RELEASE,
        "meta.helm.sh/release-namespace": ns,
    }

    # helm test runs its Pod and reports its exit (a failure on kwok nodes, where the
    # test decides the exit; on a real cluster the image's own check runs, once).
    if (
        kube.local
        or kube.get("nodes")["items"][0]["metadata"]
        .get("annotations", {})
        .get("kwok.x-k8s.io/node")
        == "fake"
    ):
        failed = run_helm_test(kube, ns, exit_code=1)
        assert failed.returncode != 0, failed.stdout
    passed = run_helm_test(kube, ns, exit_code=0)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "Phase:          Succeeded" in passed.stdout

    # Uninstall removes everything of the release but the database's volume and the last
    # finished test Pod (kept for `helm test --logs`); the generated Secrets were never
    # the release's (the Job made them) and stay too.
    helm(kube, ns, "uninstall", RELEASE, "--wait", "--timeout", "120s")
    kept = [f"PersistentVolumeClaim/{FULLNAME}-postgresql-data", f"Pod/{FULLNAME}-test-readyz"]
    wait_until(
        lambda: remaining(kube, ns) == kept,
        timeout=120,
        what=f"only {kept} left after uninstall",
    )
    generated = kube.get("secrets", namespace=ns, selector=f"fastship.dev/release={RELEASE}")
    assert sorted(s["metadata"]["name"] for s in generated["items"]) == [
        f"{FULLNAME}-jwt",
        f"{FULLNAME}-postgresql",
    ]

    # A new install under the same name adopts the volume and finds the password of its data.
    generate_secrets(kube, ns)
    install(kube, ns)
    assert secret_value(kube, ns, f"{FULLNAME}-postgresql", "password") == password
    assert secret_value(kube, ns, f"{FULLNAME}-jwt", "jwt-secret-key") == jwt


def test_hook_mode_install_and_upgrade(kube: Kube, restricted_namespace: str) -> None:
    """migrations.mode hook: the Job runs post-install (bundled database), pre-upgrade."""
    ns = restricted_namespace
    hook = ["--set", "migrations.mode=hook", "--set", "operator.enabled=false"]
    generate_secrets(kube, ns, *hook)
    install(kube, ns, *hook)  # returns once the post-install Job has completed
    job = kube.get("job", f"{FULLNAME}-migrate", namespace=ns)
    assert job["status"].get("succeeded") == 1
    first_uid = job["metadata"]["uid"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"
    config = kube.get("configmap", f"{FULLNAME}-config", namespace=ns)
    assert config["data"] == {"FASTSHIP_LOG_LEVEL": "DEBUG"}
    assert not kube.get("migrations", namespace=ns)["items"]

    install(kube, ns, *hook, "--set", "image.tag=0.2.0")
    job = kube.get("job", f"{FULLNAME}-migrate", namespace=ns)
    assert job["metadata"]["uid"] != first_uid  # before-hook-creation replaced it
    assert job["status"].get("succeeded") == 1
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "fastship:0.2.0"
    history = helm(kube, ns, "history", RELEASE, "-o", "json").stdout
    assert [r["status"] for r in json.loads(history)] == ["superseded", "deployed"]


def test_upgrade_from_a_chart_that_rendered_its_secrets(
    kube: Kube, restricted_namespace: str, tmp_path: Path
) -> None:
    """Releases of chart 0.1.0 as first published (secrets rendered with `lookup`) keep
    their JWT key and database password across the upgrade to Secrets made in the cluster,
    with the one step the chart README gives."""
    ns = restricted_namespace
    old_chart = tmp_path / "old"
    old_chart.mkdir()
    git = subprocess.run(
        ["git", "-C", str(CHART.parents[1]), "archive", OLD_CHART_COMMIT, "charts/fastship"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert git.returncode == 0, (
        f"needs the repository's history (commit {OLD_CHART_COMMIT}): {git.stderr.decode()}"
    )
    archive = git.stdout
    subprocess.run(["tar", "-x", "-C", str(old_chart)], input=archive, check=True, timeout=60)
    helm(kube, ns, "install", RELEASE, str(old_chart / "charts" / "fastship"), *VALUES)
    jwt = secret_value(kube, ns, f"{FULLNAME}-jwt", "jwt-secret-key")
    password = secret_value(kube, ns, f"{FULLNAME}-postgresql", "password")

    # The step: the Secret the old chart rendered without `keep` must survive the upgrade,
    # which no longer renders it.
    kube.kubectl("annotate", "secret", f"{FULLNAME}-jwt", "-n", ns, "helm.sh/resource-policy=keep")
    generate_secrets(kube, ns)  # the pre-upgrade hook: both exist, nothing is created
    install(kube, ns)
    assert secret_value(kube, ns, f"{FULLNAME}-jwt", "jwt-secret-key") == jwt
    assert secret_value(kube, ns, f"{FULLNAME}-postgresql", "password") == password
