"""End to end with the Helm chart: install, upgrade, a failing migration, rollback.

The chart is installed for real into the local control plane; the operator runs in the
test process with a token of the chart's own operator ServiceAccount, so its permissions
are exactly the Role that the chart rendered.

kwok runs no containers, so two things are simulated:
  * a failing migration: a post-renderer labels the Migration's pods for kwok's failure
    stage, with the output an Alembic error would have;
  * its effect on the new app pods: on a real node they would wait in their
    ``wait-for-schema`` init container and never become ready. kwok ignores init
    containers and makes every scheduled pod ready, so the new pods get a nodeSelector
    that no node matches instead, which leaves them just as unavailable. What is tested
    is the real part: the Migration's status, and that the chart's rollout
    (``maxUnavailable: 0``) keeps the old ReplicaSet serving until a ``helm rollback``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.operator.conftest import Operator, get, items, wait_applied, wait_for
from tests.operator.harness import token_kubeconfig
from tests.support.conditions import condition
from tests.support.kube import REPO_ROOT, Kube
from tests.support.manifests import KWOK_FAIL_LABEL
from tests.support.waiting import wait_until

CHART = REPO_ROOT / "charts" / "fastship"
RELEASE = "shop"
FULLNAME = "shop-fastship"
REPOSITORY = "registry.example/fastship"
# No ": " in it: kwok puts the message into YAML unquoted.
FAILURE = "alembic CommandError - Can't locate revision identified by b7e1"

FAIL_MIGRATION_POD = {
    "podLabels": {KWOK_FAIL_LABEL: "true"},
    "podAnnotations": {f"{KWOK_FAIL_LABEL}/message": FAILURE, f"{KWOK_FAIL_LABEL}/reason": "Error"},
}
POST_RENDERER = f"""#!{sys.executable}
# helm post-renderer: the chart's Migration gets pods that kwok fails with FAILURE.
import sys

import yaml

PATCH = {FAIL_MIGRATION_POD!r}
docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
for doc in docs:
    if doc.get("kind") == "Migration":
        for field, extra in PATCH.items():
            doc["spec"].setdefault(field, {{}}).update(extra)
sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))
"""


def helm_upgrade(kube: Kube, ns: str, tag: str, *extra: str) -> None:
    kube.helm(
        "upgrade",
        "--install",
        RELEASE,
        str(CHART),
        "--namespace",
        ns,
        "--set",
        "postgresql.mode=external",
        "--set",
        "postgresql.external.existingSecret=shop-db",
        "--set",
        f"image.repository={REPOSITORY}",
        "--set",
        f"image.tag={tag}",
        "--set",
        "autoscaling.enabled=false",  # a fixed count: this test is about rollouts
        "--set",
        "replicaCount=2",
        *extra,
    )


def migrated(job_name_not: str | None = None) -> Any:
    def check(m: dict[str, Any]) -> bool:
        status = m.get("status") or {}
        return status.get("phase") == "Succeeded" and status.get("jobName") != job_name_not

    return check


def ready_images(kube: Kube, ns: str) -> dict[str, int]:
    """Image of each ReplicaSet of the app Deployment -> its ready replicas."""
    result: dict[str, int] = {}
    for rs in items(kube, "replicasets", ns, "app.kubernetes.io/component=server"):
        image = rs["spec"]["template"]["spec"]["containers"][0]["image"]
        result[image] = int((rs.get("status") or {}).get("readyReplicas") or 0)
    return result


def rollout_complete(kube: Kube, ns: str) -> None:
    kube.kubectl("rollout", "status", f"deployment/{FULLNAME}", "-n", ns, "--timeout=120s")


@pytest.mark.slow
def test_helm_upgrade_gates_rollout_on_migration(
    kube: Kube, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = namespace
    kube.kubectl(
        "create",
        "secret",
        "generic",
        "shop-db",
        "-n",
        ns,
        "--from-literal=uri=postgresql://shop:secret@db.example:5432/shop",
    )
    helm_upgrade(kube, ns, "1.0.0")

    (sa,) = [
        s["metadata"]["name"]
        for s in items(kube, "serviceaccounts", ns, "app.kubernetes.io/component=operator")
    ]
    kubeconfig = token_kubeconfig(kube, ns, sa, tmp_path / "operator.kubeconfig")
    op = Operator(ns, kubeconfig, monkeypatch)
    # As the chart runs it: this release only, and no allowlist (the Migration runs
    # because its image and Secret are the Deployment's).
    op.env.update(FASTSHIP_OPERATOR_INSTANCE=RELEASE, FASTSHIP_OPERATOR_ALLOWED_IMAGES="")
    op.start()
    try:
        first = wait_for(kube, "migration", FULLNAME, ns, migrated(), "first migration", 90)
        job = get(kube, "job", first["status"]["jobName"], ns)
        assert job is not None
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == f"{REPOSITORY}:1.0.0"
        assert container["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "shop-db", "key": "uri"}
        rollout_complete(kube, ns)
        wait_applied(kube, ns, "the chart's AppConfig Applied", name=FULLNAME)

        # helm upgrade to a new image: a new Job migrates, then the rollout completes.
        helm_upgrade(kube, ns, "1.1.0")
        second = wait_for(
            kube,
            "migration",
            FULLNAME,
            ns,
            migrated(job_name_not=first["status"]["jobName"]),
            "the migration of 1.1.0",
            90,
        )
        job = get(kube, "job", second["status"]["jobName"], ns)
        assert job is not None
        assert job["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":1.1.0")
        rollout_complete(kube, ns)
        assert ready_images(kube, ns).get(f"{REPOSITORY}:1.1.0") == 2

        # A failing migration: Failed with the reason, the old ReplicaSet keeps serving.
        renderer = tmp_path / "fail-migration"
        renderer.write_text(POST_RENDERER)
        renderer.chmod(0o755)
        helm_upgrade(
            kube,
            ns,
            "1.2.0",
            "--post-renderer",
            str(renderer),
            "--set-json",
            "nodeSelector=" + json.dumps({"fastship.dev/test": "no-such-node"}),
        )
        failed = wait_for(
            kube,
            "migration",
            FULLNAME,
            ns,
            lambda m: (m.get("status") or {}).get("phase") == "Failed",
            "the failing migration to fail",
            90,
        )
        assert FAILURE in failed["status"]["message"]
        assert condition(failed, "Stalled")["status"] == "True"
        assert condition(failed, "Ready")["status"] == "False"

        def old_still_serving() -> dict[str, int] | None:
            ready = ready_images(kube, ns)
            return ready if f"{REPOSITORY}:1.2.0" in ready else None

        ready = wait_until(old_still_serving, timeout=60, what="the 1.2.0 ReplicaSet")
        assert ready[f"{REPOSITORY}:1.1.0"] == 2, ready
        assert ready[f"{REPOSITORY}:1.2.0"] == 0, ready
        dep = get(kube, "deployment", FULLNAME, ns)
        assert dep is not None
        assert dep["status"].get("availableReplicas") == 2

        # helm rollback: the previous spec's Job already succeeded; the rollout completes.
        kube.helm("rollback", RELEASE, "2", "--namespace", ns)
        back = wait_for(
            kube,
            "migration",
            FULLNAME,
            ns,
            migrated(job_name_not=failed["status"]["jobName"]),
            "the rolled-back Migration",
            90,
        )
        assert back["status"]["jobName"] == second["status"]["jobName"]
        rollout_complete(kube, ns)
        assert ready_images(kube, ns).get(f"{REPOSITORY}:1.1.0") == 2
        jobs = items(kube, "jobs", ns, f"fastship.dev/migration={FULLNAME}")
        assert len(jobs) == 3, [j["metadata"]["name"] for j in jobs]
    finally:
        op.stop()
        kube.helm("uninstall", RELEASE, "--namespace", ns, "--wait=false", check=False)
    forbidden = [line for line in op.output.splitlines() if "forbidden" in line.lower()]
    assert not forbidden, "the operator lacked a permission:\n" + "\n".join(forbidden[:10])
