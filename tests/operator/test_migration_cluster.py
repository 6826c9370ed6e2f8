"""Migration against the real API server of the local control plane.

On the kwok cluster no container runs: a Job's pod is marked Succeeded without a
termination message (so no revision is reported), and a pod labelled with kwok's
failure stage fails with the message given in its annotations.
"""

from __future__ import annotations

from typing import Any

from tests.operator.conftest import Operator, events, get, items, wait_for
from tests.support.conditions import condition
from tests.support.kube import REPO_ROOT, Kube
from tests.support.manifests import KWOK_FAIL_LABEL
from tests.support.waiting import wait_until

IMAGE = "registry.example/fastship:1.0.0"
SELECTOR = "fastship.dev/migration=app"
FAIL_ANNOTATIONS = f"{KWOK_FAIL_LABEL}/"


def migration(name: str = "app", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "image": IMAGE,
        "databaseSecretRef": {"name": "app-db", "key": "uri"},
        "deploymentRef": {"name": "app"},
        "backoffLimit": 0,
    }
    body.update(spec)
    return {
        "apiVersion": "fastship.dev/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": name},
        "spec": body,
    }


def failing(message: str, delay: str | None = None) -> dict[str, Any]:
    """Spec fields that make kwok fail the migration pod with ``message`` as its output."""
    annotations = {
        f"{KWOK_FAIL_LABEL}/message": message,
        f"{KWOK_FAIL_LABEL}/reason": "Error",
    }
    if delay:
        annotations[f"{KWOK_FAIL_LABEL}/delay"] = delay
    return {"podLabels": {KWOK_FAIL_LABEL: "true"}, "podAnnotations": annotations}


def phase_is(*phases: str) -> Any:
    return lambda m: (m.get("status") or {}).get("phase") in phases


def test_migration_runs_one_job_and_succeeds(kube: Kube, operator: Operator) -> None:
    ns = operator.namespace
    kube.apply(migration(), namespace=ns)
    done = wait_for(kube, "migration", "app", ns, phase_is("Succeeded"), "Migration Succeeded")

    status = done["status"]
    jobs = items(kube, "jobs", ns, SELECTOR)
    assert [j["metadata"]["name"] for j in jobs] == [status["jobName"]]
    job = jobs[0]
    assert status["observedGeneration"] == done["metadata"]["generation"]
    assert status["startedAt"]
    assert status["completedAt"]
    # kwok writes no termination message, so there is no revision to report.
    assert "appliedRevision" not in status
    ready = condition(done, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Migrated")
    assert condition(done, "Reconciling")["status"] == "False"
    assert condition(done, "Stalled")["status"] == "False"

    # The Job as the API server stored it.
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "Migration",
        "app",
        done["metadata"]["uid"],
        True,
    )
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 900
    assert spec["ttlSecondsAfterFinished"] == 86400
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    assert "command" not in container
    assert container["args"] == ["python", "-m", "app", "migrate"]
    assert container["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "app-db", "key": "uri"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"

    # The namespace enforces Pod Security "restricted": the pod was admitted and ran.
    pods = items(kube, "pods", ns, f"job-name={status['jobName']}")
    assert [p["status"]["phase"] for p in pods] == ["Succeeded"]

    shown = kube.kubectl("get", "migrations", "-n", ns).stdout
    assert shown.split("\n")[0].split() == ["NAME", "PHASE", "REVISION", "AGE"]
    assert "Succeeded" in shown
    wait_until(
        lambda: {"JobCreated", "Succeeded"} <= {e["reason"] for e in events(kube, ns, "app")},
        timeout=30,
        interval=0.5,
        what="Events JobCreated and Succeeded on the Migration",
    )


def test_failed_migration_reports_reason_and_output(kube: Kube, operator: Operator) -> None:
    ns = operator.namespace
    # No ": " in it: kwok puts the message into YAML unquoted.
    output = "sqlalchemy OperationalError - connection to db.example port 5432 refused"
    kube.apply(migration(**failing(output)), namespace=ns)
    failed = wait_for(kube, "migration", "app", ns, phase_is("Failed"), "Migration Failed")

    status = failed["status"]
    assert "BackoffLimitExceeded" in status["message"]
    assert output in status["message"], "the tail of the pod's output is in the message"
    ready = condition(failed, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "BackoffLimitExceeded")
    stalled = condition(failed, "Stalled")
    assert stalled["status"] == "True"
    assert output in stalled["message"]
    assert condition(failed, "Reconciling")["status"] == "False"
    assert "appliedRevision" not in status
    wait_until(
        lambda: [
            e for e in events(kube, ns, "app") if e["reason"] == "Failed" and e["type"] == "Warning"
        ],
        timeout=30,
        interval=0.5,
        what="a Warning Event Failed on the Migration",
    )


def test_restarted_operator_adopts_the_running_job(kube: Kube, operator: Operator) -> None:
    ns = operator.namespace
    # The pod keeps "running" for 20 s before kwok fails it.
    kube.apply(migration(**failing("slow", delay="20s")), namespace=ns)
    running = wait_for(kube, "migration", "app", ns, phase_is("Running"), "Migration Running")
    job_name = running["status"]["jobName"]

    operator.stop()
    # As if the operator had died right after creating the Job: no status at all.
    kube.kubectl(
        "patch",
        "migration",
        "app",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": null}',
    )
    assert not (get(kube, "migration", "app", ns) or {}).get("status")
    operator.start()

    adopted = wait_for(
        kube, "migration", "app", ns, phase_is("Running", "Failed"), "Migration adopted again"
    )
    assert adopted["status"]["jobName"] == job_name
    jobs = items(kube, "jobs", ns, SELECTOR)
    assert [j["metadata"]["name"] for j in jobs] == [job_name], "exactly one Job"
    created = [e for e in events(kube, ns, "app") if e["reason"] == "JobCreated"]
    assert sum(e.get("count", 1) for e in created) == 1


def test_spec_change_runs_a_new_job(kube: Kube, operator: Operator) -> None:
    ns = operator.namespace
    kube.apply(migration(), namespace=ns)
    first = wait_for(kube, "migration", "app", ns, phase_is("Succeeded"), "first Migration")

    kube.apply(migration(image="registry.example/fastship:1.1.0"), namespace=ns)
    second = wait_for(
        kube,
        "migration",
        "app",
        ns,
        lambda m: (
            m["status"].get("jobName") != first["status"]["jobName"]
            and m["status"].get("phase") == "Succeeded"
        ),
        "Migration of the new image Succeeded",
    )
    assert second["status"]["observedGeneration"] == first["metadata"]["generation"] + 1
    jobs = {j["metadata"]["name"]: j for j in items(kube, "jobs", ns, SELECTOR)}
    assert set(jobs) == {first["status"]["jobName"], second["status"]["jobName"]}
    new_job = jobs[second["status"]["jobName"]]
    assert new_job["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":1.1.0")

    # Applying the same spec again starts nothing.
    kube.apply(migration(image="registry.example/fastship:1.1.0"), namespace=ns)
    kube.kubectl("annotate", "migration", "app", "-n", ns, "touched=yes")
    wait_until(
        lambda: get(kube, "migration", "app", ns),
        timeout=5,
        what="the Migration",
    )
    assert len(items(kube, "jobs", ns, SELECTOR)) == 2

    # Deleting the Migration removes its Jobs (owner references, garbage collector).
    kube.kubectl("delete", "migration", "app", "-n", ns, "--wait=true", "--timeout=60s")
    wait_until(
        lambda: not items(kube, "jobs", ns, SELECTOR),
        timeout=60,
        interval=0.5,
        what="the garbage collector to delete the Migration's Jobs",
    )


def test_invalid_migrations_are_rejected_by_the_api_server(kube: Kube, crds: None) -> None:
    ns = kube.create_namespace()
    try:
        cases = [
            (
                {
                    "apiVersion": "fastship.dev/v1alpha1",
                    "kind": "Migration",
                    "metadata": {"name": "no-secret"},
                    "spec": {"image": IMAGE},
                },
                "spec.databaseSecretRef: Required value",
            ),
            (migration("bad-backoff", backoffLimit=-1), "spec.backoffLimit: Invalid value: -1"),
            (migration("bad-image", image="has space"), "spec.image: Invalid value"),
            (
                migration("bad-secret", databaseSecretRef={"name": "Bad_Name", "key": "uri"}),
                "spec.databaseSecretRef.name: Invalid value",
            ),
            (migration("bad-command", command="migrate"), "spec.command: Invalid value"),
        ]
        for manifest, expected in cases:
            proc = kube.apply(manifest, namespace=ns, check=False)
            assert proc.returncode != 0, f"accepted: {manifest['spec']}"
            assert expected in proc.stderr, proc.stderr
    finally:
        kube.delete_namespace(ns)


def test_samples_are_accepted_by_the_api_server(kube: Kube, crds: None) -> None:
    ns = kube.create_namespace()
    try:
        samples = str(REPO_ROOT / "k8s" / "samples")
        kube.kubectl("apply", "--dry-run=server", "-n", ns, "-f", samples)
        # k8s/crds is the chart's crds/ folder, for kubectl users.
        assert (REPO_ROOT / "k8s" / "crds").resolve() == (
            REPO_ROOT / "charts" / "fastship" / "crds"
        ).resolve()
    finally:
        kube.delete_namespace(ns)
