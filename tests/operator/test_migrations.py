"""Unit tests of the Migration builders and status computation (no cluster)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fastship_operator import migrations as mg
from tests.support.conditions import condition

UID = "1f0c7a52-0000-4000-8000-000000000001"


def migration(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "image": "registry.example/fastship:1.2.0",
        "databaseSecretRef": {"name": "db", "key": "uri"},
        "deploymentRef": {"name": "fastship"},
    }
    base.update(spec)
    return {
        "apiVersion": "fastship.dev/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": "fastship", "namespace": "shop", "uid": UID, "generation": 3},
        "spec": base,
    }


def job_for(m: dict[str, Any]) -> dict[str, Any]:
    return mg.build_job(m, mg.parse_spec(m["spec"], m["metadata"].get("annotations")))


def test_job_runs_migrate_as_args_under_restricted_profile() -> None:
    job = job_for(migration())
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "command" not in container, "tini must stay the entrypoint"
    assert container["args"] == ["python", "-m", "app", "migrate"]
    assert container["env"] == [
        {
            "name": "FASTSHIP_DATABASE_URL",
            "valueFrom": {"secretKeyRef": {"name": "db", "key": "uri"}},
        },
        # the wait for another migration's lock ends before the Job's deadline kills it
        {"name": "FASTSHIP_MIGRATE_DEADLINE_SECONDS", "value": "890"},
    ]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    # No fixed ids: OpenShift's restricted-v2 assigns its own, elsewhere the image's runs.
    for context in (sc, pod["securityContext"]):
        assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(context)
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert job["spec"]["backoffLimit"] == mg.DEFAULT_BACKOFF_LIMIT
    assert job["spec"]["activeDeadlineSeconds"] == mg.DEFAULT_ACTIVE_DEADLINE_SECONDS
    assert job["spec"]["ttlSecondsAfterFinished"] == mg.JOB_TTL_SECONDS
    (owner,) = job["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "fastship.dev/v1alpha1",
        "kind": "Migration",
        "name": "fastship",
        "uid": UID,
        "controller": True,
    }
    assert job["metadata"]["namespace"] == "shop"


def test_spec_fields_reach_the_job() -> None:
    m = migration(
        command=["python", "-m", "app", "migrate", "--termination-log", "/tmp/rev"],
        backoffLimit=0,
        activeDeadlineSeconds=60,
        resources={"limits": {"cpu": "1", "memory": "1Gi"}},
        serviceAccountName="migrator",
        podLabels={"team": "shop"},
        podAnnotations={"sidecar.istio.io/inject": "false"},
    )
    job = job_for(m)
    pod = job["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["args"][-2:] == ["--termination-log", "/tmp/rev"]
    assert container["resources"] == {"limits": {"cpu": "1", "memory": "1Gi"}}
    assert pod["spec"]["serviceAccountName"] == "migrator"
    assert pod["metadata"]["labels"]["team"] == "shop"
    assert pod["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 60


def test_pod_labels_cannot_override_the_operators_labels() -> None:
    m = migration(podLabels={mg.HASH_LABEL: "forged", "app.kubernetes.io/managed-by": "x"})
    labels = job_for(m)["spec"]["template"]["metadata"]["labels"]
    assert labels[mg.HASH_LABEL] != "forged"
    assert labels["app.kubernetes.io/managed-by"] == "fastship-operator"


def test_job_name_is_stable_and_changes_with_the_spec() -> None:
    a = job_for(migration())["metadata"]["name"]
    assert a == job_for(migration())["metadata"]["name"]
    assert a.startswith("fastship-")
    assert a != job_for(migration(image="registry.example/fastship:1.3.0"))["metadata"]["name"]
    # The Deployment reference does not change what the Job does.
    assert a == job_for(migration(deploymentRef={"name": "other"}))["metadata"]["name"]


def test_defaults_hash_like_explicit_values() -> None:
    explicit = migration(
        command=list(mg.DEFAULT_ARGS),
        backoffLimit=mg.DEFAULT_BACKOFF_LIMIT,
        activeDeadlineSeconds=mg.DEFAULT_ACTIVE_DEADLINE_SECONDS,
    )
    assert mg.spec_hash(mg.parse_spec(explicit["spec"])) == mg.spec_hash(
        mg.parse_spec(migration()["spec"])
    )


def test_retry_annotation_gives_a_new_job() -> None:
    m = migration()
    first = job_for(m)["metadata"]["name"]
    m["metadata"]["annotations"] = {mg.RETRY_ANNOTATION: "2024-05-01T10:00:00Z"}
    assert job_for(m)["metadata"]["name"] != first


def test_long_names_fit_in_a_label() -> None:
    m = migration()
    m["metadata"]["name"] = "a" * 200
    name = job_for(m)["metadata"]["name"]
    assert len(name) <= mg.MAX_JOB_NAME
    assert name.endswith(mg.spec_hash(mg.parse_spec(m["spec"])))
    assert all(len(v) <= 63 for v in job_for(m)["metadata"]["labels"].values())


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ({"databaseSecretRef": {"name": "db", "key": "uri"}}, "spec.image is required"),
        ({"image": "x"}, "spec.databaseSecretRef needs name and key"),
        (
            {"image": "x", "databaseSecretRef": {"name": "db", "key": "uri"}, "command": []},
            "spec.command must be a non-empty list of strings",
        ),
        (
            {"image": "x", "databaseSecretRef": {"name": "db", "key": "u"}, "podLabels": {"a": 1}},
            "spec.podLabels must be a map of strings",
        ),
    ],
)
def test_bad_specs_name_the_field(spec: dict[str, Any], error: str) -> None:
    with pytest.raises(mg.SpecError, match=error):
        mg.parse_spec(spec)


# --- outcomes -----------------------------------------------------------------------------


def job(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "fastship-abc"}, "status": status}


def pod(name: str, terminated: dict[str, Any] | None = None, **state: Any) -> dict[str, Any]:
    st = {"terminated": terminated} if terminated else state
    return {
        "metadata": {"name": name},
        "status": {"containerStatuses": [{"name": mg.CONTAINER, "state": st}]},
    }


COMPLETE = {"type": "Complete", "status": "True", "lastTransitionTime": "2024-05-01T10:01:00Z"}


def test_succeeded_job_reports_the_revision_from_the_termination_message() -> None:
    outcome = mg.job_outcome(
        job(
            conditions=[COMPLETE],
            startTime="2024-05-01T10:00:00Z",
            completionTime="2024-05-01T10:01:00Z",
        ),
        [pod("p1", {"exitCode": 0, "message": "3f2a1c9d0e7b\n", "finishedAt": "t"})],
    )
    assert outcome.phase == mg.SUCCEEDED
    assert outcome.revision == "3f2a1c9d0e7b"
    assert outcome.message == "database at revision 3f2a1c9d0e7b"
    assert outcome.started_at == "2024-05-01T10:00:00Z"
    assert outcome.completed_at == "2024-05-01T10:01:00Z"


def test_succeeded_job_without_a_message_has_no_revision() -> None:
    outcome = mg.job_outcome(job(conditions=[COMPLETE]), [pod("p1", {"exitCode": 0})])
    assert outcome.phase == mg.SUCCEEDED
    assert outcome.revision is None
    assert outcome.message == "migration completed"


def test_log_output_is_not_taken_for_a_revision() -> None:
    message = "Traceback (most recent call last):\n  File ..."
    assert mg.revision_from_pods([pod("p", {"exitCode": 0, "message": message})]) is None


def test_failed_job_reports_reason_and_output_tail() -> None:
    failed = {
        "type": "Failed",
        "status": "True",
        "reason": "BackoffLimitExceeded",
        "message": "Job has reached the specified backoff limit",
        "lastTransitionTime": "2024-05-01T10:02:00Z",
    }
    long_log = "x" * 5000 + "\nsqlalchemy.exc.OperationalError: connection refused"
    pods = [
        pod("p1", {"exitCode": 1, "message": "first try", "finishedAt": "2024-05-01T10:00:30Z"}),
        pod("p2", {"exitCode": 1, "message": long_log, "finishedAt": "2024-05-01T10:01:30Z"}),
    ]
    outcome = mg.job_outcome(job(conditions=[failed], failed=2), pods)
    assert outcome.phase == mg.FAILED
    assert outcome.reason == "BackoffLimitExceeded"
    assert "Job fastship-abc failed: BackoffLimitExceeded" in outcome.message
    assert "pod p2 exited 1" in outcome.message
    assert outcome.message.endswith("connection refused")
    assert len(outcome.message) < mg.MAX_TAIL + 200
    assert outcome.completed_at == "2024-05-01T10:02:00Z"


def test_deadline_exceeded_is_the_reason() -> None:
    failed = {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}
    assert mg.job_outcome(job(conditions=[failed]), []).reason == "DeadlineExceeded"


def test_running_pending_and_stuck() -> None:
    assert mg.job_outcome(job(active=1), []).phase == mg.RUNNING
    retried = mg.job_outcome(job(active=1, failed=1), [])
    assert "(attempt 2)" in retried.message
    assert mg.job_outcome(job(), []).phase == mg.PENDING
    stuck = mg.job_outcome(
        job(active=1),
        [
            pod(
                "p1",
                waiting={
                    "reason": "CreateContainerConfigError",
                    "message": 'secret "db" not found',
                },
            )
        ],
    )
    assert stuck.phase == mg.PENDING
    assert stuck.reason == "CreateContainerConfigError"
    assert stuck.message == 'pod p1: CreateContainerConfigError: secret "db" not found'


# --- status -------------------------------------------------------------------------------


def test_status_conditions_per_phase() -> None:
    now = "2024-05-01T10:00:00Z"
    running = mg.build_status(
        previous=None,
        generation=3,
        job_name="j",
        outcome=mg.JobOutcome(mg.RUNNING, "Migrating", "Job j is running"),
        now=now,
    )
    assert running["phase"] == "Running"
    assert running["observedGeneration"] == 3
    assert (condition(running, "Ready")["status"], condition(running, "Reconciling")["status"]) == (
        "False",
        "True",
    )
    assert condition(running, "Stalled")["status"] == "False"
    assert all(c["observedGeneration"] == 3 for c in running["conditions"])

    done = mg.build_status(
        previous=running,
        generation=3,
        job_name="j",
        outcome=mg.JobOutcome(mg.SUCCEEDED, "Migrated", "database at revision r1", "r1"),
        now="2024-05-01T10:05:00Z",
    )
    assert done["appliedRevision"] == "r1"
    assert condition(done, "Ready") == {
        "type": "Ready",
        "status": "True",
        "reason": "Migrated",
        "message": "database at revision r1",
        "observedGeneration": 3,
        "lastTransitionTime": "2024-05-01T10:05:00Z",
    }
    assert condition(done, "Stalled")["lastTransitionTime"] == now, (
        "unchanged status keeps its time"
    )

    failed = mg.build_status(
        previous=None,
        generation=4,
        job_name="k",
        outcome=mg.JobOutcome(mg.FAILED, "BackoffLimitExceeded", "Job k failed"),
        now=now,
    )
    assert condition(failed, "Stalled")["status"] == "True"
    assert condition(failed, "Ready")["reason"] == "BackoffLimitExceeded"
    assert condition(failed, "Reconciling")["status"] == "False"
    assert "appliedRevision" not in failed


def test_same_outcome_twice_gives_the_same_status() -> None:
    outcome = mg.JobOutcome(mg.RUNNING, "Migrating", "Job j is running", started_at="t0")
    first = mg.build_status(previous=None, generation=1, job_name="j", outcome=outcome, now="a")
    again = mg.build_status(
        previous=copy.deepcopy(first), generation=1, job_name="j", outcome=outcome, now="b"
    )
    assert mg.same_status(first, again)


def test_revision_of_a_new_job_is_not_inherited() -> None:
    done = mg.build_status(
        previous=None,
        generation=1,
        job_name="j1",
        outcome=mg.JobOutcome(mg.SUCCEEDED, "Migrated", "", revision="r1"),
        now="a",
    )
    pending = mg.build_status(
        previous=done,
        generation=2,
        job_name="j2",
        outcome=mg.JobOutcome(mg.PENDING, "JobPending", ""),
        now="b",
    )
    assert "appliedRevision" not in pending


def test_expired_job_keeps_its_recorded_outcome() -> None:
    done = mg.build_status(
        previous=None,
        generation=1,
        job_name="j1",
        outcome=mg.JobOutcome(mg.SUCCEEDED, "Migrated", "database at revision r1", "r1", "s", "c"),
        now="a",
    )
    again = mg.build_status(
        previous=done, generation=1, job_name="j1", outcome=mg.finished_outcome(done), now="b"
    )
    assert mg.same_status(done, again)


def test_scheduling_and_pull_secrets_reach_the_job_and_change_the_hash_only_when_set() -> None:
    plain = migration()
    placed = migration(
        imagePullSecrets=[{"name": "regcred"}],
        nodeSelector={"pool": "batch"},
        tolerations=[{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
        affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        priorityClassName="migrations",
    )
    pod = job_for(placed)["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == {"pool": "batch"}
    assert pod["tolerations"] == [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["affinity"] == placed["spec"]["affinity"]
    assert pod["priorityClassName"] == "migrations"
    plain_pod = job_for(plain)["spec"]["template"]["spec"]
    assert not {"imagePullSecrets", "nodeSelector", "tolerations", "affinity"} & set(plain_pod)
    plain_hash = mg.spec_hash(mg.parse_spec(plain["spec"]))
    assert plain_hash != mg.spec_hash(mg.parse_spec(placed["spec"]))
    # Specs without the new fields keep their hash, so an upgraded operator adopts their Jobs.
    assert plain_hash == mg.spec_hash(mg.parse_spec({**plain["spec"], "tolerations": []}))
    with pytest.raises(mg.SpecError, match="imagePullSecrets"):
        mg.parse_spec({**plain["spec"], "imagePullSecrets": ["regcred"]})


def deployment_running(image: str, ref: tuple[str, str] = ("db", "uri")) -> dict[str, Any]:
    return {
        "metadata": {"name": "fastship"},
        "spec": {
            "template": {
                "spec": {
                    "initContainers": [{"name": "wait", "image": image}],
                    "containers": [
                        {
                            "name": "server",
                            "image": image,
                            "env": [
                                {
                                    "name": "FASTSHIP_DATABASE_URL",
                                    "valueFrom": {"secretKeyRef": {"name": ref[0], "key": ref[1]}},
                                }
                            ],
                        }
                    ],
                }
            }
        },
    }


def test_a_migration_runs_only_the_image_and_secret_of_the_deployment_it_gates() -> None:
    spec = mg.parse_spec(migration()["spec"])
    image = spec.image
    assert mg.admission_problem(spec, "fastship", deployment_running(image), ()) is None
    other = mg.admission_problem(spec, "fastship", deployment_running("evil:1"), ())
    assert other is not None
    assert f"image {image} is not an image of Deployment fastship (evil:1, evil:1)" in other
    secret = mg.admission_problem(spec, "fastship", deployment_running(image, ("admin", "uri")), ())
    assert secret is not None
    assert "Secret db key uri is not read by Deployment" in secret
    missing = mg.admission_problem(spec, "fastship", None, ())
    assert missing is not None
    assert "waiting for Deployment fastship" in missing
    unbound = mg.admission_problem(spec, None, None, ())
    assert unbound is not None
    assert "set spec.deploymentRef" in unbound
    # The operator's allowlist admits an image whatever the Deployment runs.
    assert mg.admission_problem(spec, None, None, ("registry.example/fastship:*",)) is None
    assert mg.admission_problem(spec, "fastship", None, ("registry.example/other:*",)) is not None
