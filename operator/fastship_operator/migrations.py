"""Migration: the Job that runs ``python -m app migrate``, and the status it leads to.

Pure functions only: they take and return plain dicts as the Kubernetes API serves them,
so that every decision is unit-tested without a cluster.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastship_operator import API_VERSION, MANAGED_BY
from fastship_operator.conditions import FALSE, TRUE, Condition, merge_conditions

KIND = "Migration"
PLURAL = "migrations"

DEFAULT_ARGS = ("python", "-m", "app", "migrate")
DEFAULT_BACKOFF_LIMIT = 2
DEFAULT_ACTIVE_DEADLINE_SECONDS = 900
DEFAULT_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "50m", "memory": "128Mi"},
    "limits": {"memory": "512Mi"},
}
# Finished Jobs (and their pods) are removed a day later; status keeps their outcome.
JOB_TTL_SECONDS = 86400
CONTAINER = "migrate"
DATABASE_URL_ENV = "FASTSHIP_DATABASE_URL"
# ``python -m app migrate`` stops waiting for the migration lock (and retrying) this many
# seconds before the Job's activeDeadlineSeconds, so that it says why instead of being killed.
DEADLINE_ENV = "FASTSHIP_MIGRATE_DEADLINE_SECONDS"
DEADLINE_MARGIN_SECONDS = 10

# Changing this annotation's value asks for a new run of an unchanged spec (a retry).
RETRY_ANNOTATION = "fastship.dev/retry"
HASH_LABEL = "fastship.dev/spec-hash"
MIGRATION_LABEL = "fastship.dev/migration"
# Job names end up in the pods' job-name label (at most 63 characters) with a suffix.
MAX_JOB_NAME = 52
HASH_LENGTH = 10
MAX_TAIL = 2048

PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
TERMINAL = frozenset({SUCCEEDED, FAILED})

# Container waiting reasons that will not clear up by themselves.
STUCK_REASONS = frozenset(
    {
        "CreateContainerConfigError",
        "CreateContainerError",
        "InvalidImageName",
        "ErrImagePull",
        "ImagePullBackOff",
        "ErrImageNeverPull",
    }
)


class SpecError(ValueError):
    """The Migration's spec cannot be turned into a Job (the CRD schema normally prevents it)."""


@dataclass(frozen=True)
class JobSpec:
    """The normalized parts of a Migration spec that decide what its Job does."""

    image: str
    args: tuple[str, ...]
    secret_name: str
    secret_key: str
    backoff_limit: int = DEFAULT_BACKOFF_LIMIT
    active_deadline_seconds: int = DEFAULT_ACTIVE_DEADLINE_SECONDS
    resources: Mapping[str, Any] = field(default_factory=lambda: DEFAULT_RESOURCES)
    service_account_name: str | None = None
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    retry: str = ""
    # Scheduling and registry access of the Job's pod (empty: not set).
    image_pull_secrets: tuple[str, ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] = field(default_factory=dict)
    priority_class_name: str | None = None

    def scheduling(self) -> dict[str, Any]:
        """The pod-spec fields of scheduling and registry access that are set."""
        fields: dict[str, Any] = {}
        if self.image_pull_secrets:
            fields["imagePullSecrets"] = [{"name": n} for n in self.image_pull_secrets]
        if self.node_selector:
            fields["nodeSelector"] = dict(self.node_selector)
        if self.tolerations:
            fields["tolerations"] = [dict(t) for t in self.tolerations]
        if self.affinity:
            fields["affinity"] = dict(self.affinity)
        if self.priority_class_name:
            fields["priorityClassName"] = self.priority_class_name
        return fields

    def canonical(self) -> str:
        """Stable JSON of every field, the input of :func:`spec_hash`. Scheduling fields
        enter only when set, so that specs without them keep the hash (and Job) they had."""
        return json.dumps(
            {
                **self.scheduling(),
                "image": self.image,
                "args": list(self.args),
                "databaseSecretRef": {"name": self.secret_name, "key": self.secret_key},
                "backoffLimit": self.backoff_limit,
                "activeDeadlineSeconds": self.active_deadline_seconds,
                "resources": self.resources,
                "serviceAccountName": self.service_account_name,
                "podLabels": dict(self.pod_labels),
                "podAnnotations": dict(self.pod_annotations),
                "retry": self.retry,
            },
            sort_keys=True,
            separators=(",", ":"),
        )


def _str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise SpecError(f"{what} must be a map of strings")
    return dict(value)


def parse_spec(spec: Mapping[str, Any], annotations: Mapping[str, str] | None = None) -> JobSpec:
    """Normalize a Migration spec (defaults applied); :class:`SpecError` names what is wrong."""
    image = spec.get("image")
    if not isinstance(image, str) or not image.strip():
        raise SpecError("spec.image is required")
    ref = spec.get("databaseSecretRef")
    if not isinstance(ref, Mapping) or not ref.get("name") or not ref.get("key"):
        raise SpecError("spec.databaseSecretRef needs name and key")
    command = spec.get("command")
    if command is None:
        args = DEFAULT_ARGS
    elif isinstance(command, list) and command and all(isinstance(a, str) and a for a in command):
        args = tuple(command)
    else:
        raise SpecError("spec.command must be a non-empty list of strings")
    resources = spec.get("resources")
    if resources is None:
        resources = DEFAULT_RESOURCES
    elif not isinstance(resources, Mapping):
        raise SpecError("spec.resources must be an object")
    sa = spec.get("serviceAccountName")
    pull_secrets = spec.get("imagePullSecrets") or []
    if not isinstance(pull_secrets, list) or not all(
        isinstance(p, Mapping) and isinstance(p.get("name"), str) and p["name"]
        for p in pull_secrets
    ):
        raise SpecError("spec.imagePullSecrets must be a list of {name: <secret>}")
    tolerations = spec.get("tolerations") or []
    if not isinstance(tolerations, list) or not all(isinstance(t, Mapping) for t in tolerations):
        raise SpecError("spec.tolerations must be a list of tolerations")
    affinity = spec.get("affinity") or {}
    if not isinstance(affinity, Mapping):
        raise SpecError("spec.affinity must be an object")
    priority = spec.get("priorityClassName")
    return JobSpec(
        image=image,
        args=args,
        secret_name=str(ref["name"]),
        secret_key=str(ref["key"]),
        backoff_limit=int(spec.get("backoffLimit", DEFAULT_BACKOFF_LIMIT)),
        active_deadline_seconds=int(
            spec.get("activeDeadlineSeconds", DEFAULT_ACTIVE_DEADLINE_SECONDS)
        ),
        resources={k: dict(v) for k, v in resources.items() if isinstance(v, Mapping)},
        service_account_name=str(sa) if sa else None,
        pod_labels=_str_map(spec.get("podLabels"), "spec.podLabels"),
        pod_annotations=_str_map(spec.get("podAnnotations"), "spec.podAnnotations"),
        retry=str((annotations or {}).get(RETRY_ANNOTATION, "")),
        image_pull_secrets=tuple(str(p["name"]) for p in pull_secrets),
        node_selector=_str_map(spec.get("nodeSelector"), "spec.nodeSelector"),
        tolerations=tuple(dict(t) for t in tolerations),
        affinity=dict(affinity),
        priority_class_name=str(priority) if priority else None,
    )


def spec_hash(job_spec: JobSpec) -> str:
    """Short hash of everything that decides what the Job does."""
    return hashlib.sha256(job_spec.canonical().encode()).hexdigest()[:HASH_LENGTH]


def job_name(migration_name: str, hash_: str) -> str:
    """``<migration>-<hash>``, the name shortened so the result fits in a label value."""
    prefix = migration_name[: MAX_JOB_NAME - len(hash_) - 1].rstrip("-.")
    return f"{prefix}-{hash_}"


def labels(migration_name: str, hash_: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "fastship",
        "app.kubernetes.io/component": "migration",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        MIGRATION_LABEL: migration_name[:63].rstrip("-._"),
        HASH_LABEL: hash_,
    }


def owner_reference(body: Mapping[str, Any], kind: str) -> dict[str, Any]:
    meta = body["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
    }


def restricted_container_security_context() -> dict[str, Any]:
    """What the Pod Security "restricted" profile asks of a container, and a read-only root.

    No user or group id: the image's own non-root user (10001) runs, or, on platforms
    that assign ids per namespace (OpenShift's restricted-v2), the one they assign."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def build_job(migration: Mapping[str, Any], job_spec: JobSpec) -> dict[str, Any]:
    """The Job for a Migration: one pod running the migration under a restricted profile.

    The migration command goes into the container's ``args`` so that the image's
    entrypoint (tini) stays PID 1 and forwards signals.
    """
    meta = migration["metadata"]
    hash_ = spec_hash(job_spec)
    job_labels = labels(meta["name"], hash_)
    deployment = ((migration.get("spec") or {}).get("deploymentRef") or {}).get("name")
    if deployment:
        job_labels["fastship.dev/deployment"] = str(deployment)[:63].rstrip("-._")
    pod_labels = {**job_spec.pod_labels, **job_labels}
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": CONTAINER,
                "image": job_spec.image,
                "args": list(job_spec.args),
                "env": [
                    {
                        "name": DATABASE_URL_ENV,
                        "valueFrom": {
                            "secretKeyRef": {
                                "name": job_spec.secret_name,
                                "key": job_spec.secret_key,
                            }
                        },
                    },
                    {
                        "name": DEADLINE_ENV,
                        "value": str(
                            max(
                                job_spec.active_deadline_seconds - DEADLINE_MARGIN_SECONDS,
                                job_spec.active_deadline_seconds // 2,
                            )
                        ),
                    },
                ],
                "resources": {k: dict(v) for k, v in job_spec.resources.items()},
                "securityContext": restricted_container_security_context(),
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }
    if job_spec.service_account_name:
        pod_spec["serviceAccountName"] = job_spec.service_account_name
    pod_spec.update(job_spec.scheduling())
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(meta["name"], hash_),
            "namespace": meta.get("namespace"),
            "labels": job_labels,
            "ownerReferences": [owner_reference(migration, KIND)],
        },
        "spec": {
            "backoffLimit": job_spec.backoff_limit,
            "activeDeadlineSeconds": job_spec.active_deadline_seconds,
            "ttlSecondsAfterFinished": JOB_TTL_SECONDS,
            "template": {
                "metadata": {"labels": pod_labels, "annotations": dict(job_spec.pod_annotations)},
                "spec": pod_spec,
            },
        },
    }


# --- who may run what -----------------------------------------------------------------


def pod_images(deployment: Mapping[str, Any]) -> list[str]:
    """Images of a Deployment's containers and init containers."""
    pod = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    return [
        str(c["image"])
        for c in [*(pod.get("initContainers") or ()), *(pod.get("containers") or ())]
        if c.get("image")
    ]


def pod_secret_refs(deployment: Mapping[str, Any]) -> set[tuple[str, str | None]]:
    """(Secret, key) pairs a Deployment's containers read; key None: the whole Secret."""
    pod = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    refs: set[tuple[str, str | None]] = set()
    for c in [*(pod.get("initContainers") or ()), *(pod.get("containers") or ())]:
        for entry in c.get("env") or ():
            ref = (entry.get("valueFrom") or {}).get("secretKeyRef") or {}
            if ref.get("name"):
                refs.add((str(ref["name"]), str(ref.get("key"))))
        for source in c.get("envFrom") or ():
            ref = source.get("secretRef") or {}
            if ref.get("name"):
                refs.add((str(ref["name"]), None))
    return refs


def allowed(image: str, allowlist: Sequence[str]) -> bool:
    """Whether ``image`` matches one of the operator's allowed image patterns (globs)."""
    return any(fnmatch.fnmatchcase(image, pattern) for pattern in allowlist)


def admission_problem(
    job_spec: JobSpec,
    deployment_name: str | None,
    deployment: Mapping[str, Any] | None,
    allowlist: Sequence[str],
) -> str | None:
    """Why the operator refuses to run this Migration's Job, or None.

    A Migration runs its image with a database Secret in the environment, so it may run
    only what the Deployment it gates runs already: one of that Deployment's images,
    with a Secret key that Deployment reads. An image that matches the operator's
    allowlist (``FASTSHIP_OPERATOR_ALLOWED_IMAGES``) may run with any Secret.
    """
    if allowed(job_spec.image, allowlist):
        return None
    hint = (
        f"images allowed by the operator: {', '.join(allowlist)}"
        if allowlist
        else "the operator has no allowlist of images (FASTSHIP_OPERATOR_ALLOWED_IMAGES)"
    )
    if not deployment_name:
        return (
            f"image {job_spec.image} is not allowed: set spec.deploymentRef to the Deployment "
            f"that runs this image; {hint}"
        )
    if deployment is None:
        return (
            f"waiting for Deployment {deployment_name}: a Migration runs only an image of "
            f"the Deployment it gates ({hint})"
        )
    images = pod_images(deployment)
    if job_spec.image not in images:
        return (
            f"image {job_spec.image} is not an image of Deployment {deployment_name} "
            f"({', '.join(images) or 'none'}); {hint}"
        )
    refs = pod_secret_refs(deployment)
    if (job_spec.secret_name, job_spec.secret_key) not in refs and (
        job_spec.secret_name,
        None,
    ) not in refs:
        return (
            f"Secret {job_spec.secret_name} key {job_spec.secret_key} is not read by "
            f"Deployment {deployment_name}: a Migration may only use a database Secret that "
            "the Deployment it gates uses"
        )
    return None


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """uid of the object's controlling owner, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def owner_name(obj: Mapping[str, Any], kind: str) -> str | None:
    """Name of the object's controlling owner of ``kind`` (in our API group), if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if (
            ref.get("controller")
            and ref.get("kind") == kind
            and str(ref.get("apiVersion", "")).startswith("fastship.dev/")
        ):
            return str(ref.get("name"))
    return None


# --- reading a Job's outcome ------------------------------------------------------------


@dataclass(frozen=True)
class JobOutcome:
    """What a Job and its pods say about the migration."""

    phase: str
    reason: str
    message: str = ""
    revision: str | None = None
    started_at: str | None = None
    completed_at: str | None = None


_REVISION = re.compile(r"^[A-Za-z0-9_.:+-]{1,128}$")


def _job_condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or ():
        if cond.get("type") == type_ and cond.get("status") == "True":
            return cond  # type: ignore[no-any-return]
    return None


def _terminated(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or ():
        if cs.get("name") == CONTAINER:
            term = (cs.get("state") or {}).get("terminated")
            if term:
                return term  # type: ignore[no-any-return]
    return None


def _by_finish(pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Pods with a terminated migration container, the most recently finished last."""
    done = [p for p in pods if _terminated(p)]
    return sorted(done, key=lambda p: str((_terminated(p) or {}).get("finishedAt") or ""))


def tail(text: str, limit: int = MAX_TAIL) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def revision_from_pods(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """The applied revision from the termination message of the succeeded pod.

    ``python -m app migrate`` writes the revision to /dev/termination-log; a pod that
    wrote none (an older image, or a simulated node) gives None.
    """
    for pod in reversed(_by_finish(pods)):
        term = _terminated(pod) or {}
        if term.get("exitCode") == 0:
            message = str(term.get("message") or "").strip()
            return message if _REVISION.match(message) else None
    return None


def failure_from_pods(pods: Sequence[Mapping[str, Any]]) -> str:
    """Exit code, reason and the output tail of the most recent failed migration pod."""
    for pod in reversed(_by_finish(pods)):
        term = _terminated(pod) or {}
        if term.get("exitCode") not in (0, None):
            parts = [f"pod {pod['metadata']['name']} exited {term.get('exitCode')}"]
            if term.get("reason"):
                parts[0] += f" ({term['reason']})"
            message = str(term.get("message") or "").strip()
            if message:
                parts.append(tail(message))
            return ": ".join(parts)
    return ""


def stuck_from_pods(pods: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    """(reason, message) of a migration pod that cannot start, e.g. a missing Secret."""
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or ():
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in STUCK_REASONS:
                message = str(waiting.get("message") or "").strip()
                text = f"pod {pod['metadata']['name']}: {waiting['reason']}"
                return str(waiting["reason"]), f"{text}: {message}" if message else text
    return None


def job_outcome(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> JobOutcome:
    """Phase, reason and details of a Job from its conditions and its pods."""
    status = job.get("status") or {}
    started = status.get("startTime")
    complete = _job_condition(job, "Complete")
    if complete:
        revision = revision_from_pods(pods)
        return JobOutcome(
            phase=SUCCEEDED,
            reason="Migrated",
            message=f"database at revision {revision}" if revision else "migration completed",
            revision=revision,
            started_at=started,
            completed_at=status.get("completionTime") or complete.get("lastTransitionTime"),
        )
    failed = _job_condition(job, "Failed")
    if failed:
        reason = str(failed.get("reason") or "JobFailed")
        parts = [f"Job {job['metadata']['name']} failed: {reason}"]
        if failed.get("message"):
            parts[0] += f" ({failed['message']})"
        detail = failure_from_pods(pods)
        if detail:
            parts.append(detail)
        return JobOutcome(
            phase=FAILED,
            reason=reason,
            message="; ".join(parts),
            started_at=started,
            completed_at=failed.get("lastTransitionTime"),
        )
    stuck = stuck_from_pods(pods)
    if stuck:
        return JobOutcome(phase=PENDING, reason=stuck[0], message=stuck[1], started_at=started)
    if status.get("active") or status.get("ready") or status.get("failed"):
        retries = int(status.get("failed") or 0)
        note = f" (attempt {retries + 1})" if retries else ""
        return JobOutcome(
            phase=RUNNING,
            reason="Migrating",
            message=f"Job {job['metadata']['name']} is running{note}",
            started_at=started,
        )
    return JobOutcome(
        phase=PENDING,
        reason="JobPending",
        message=f"Job {job['metadata']['name']} is waiting for its pod",
        started_at=started,
    )


# --- status -----------------------------------------------------------------------------


def conditions_for(phase: str, reason: str, message: str) -> list[Condition]:
    """Ready / Reconciling / Stalled, as users of atlas-operator and Flux read them."""
    if phase == SUCCEEDED:
        return [
            Condition("Ready", TRUE, reason, message),
            Condition("Reconciling", FALSE, reason, ""),
            Condition("Stalled", FALSE, reason, ""),
        ]
    if phase == FAILED:
        return [
            Condition("Ready", FALSE, reason, message),
            Condition("Reconciling", FALSE, reason, ""),
            Condition("Stalled", TRUE, reason, message),
        ]
    if reason in STUCK_REASONS or reason in ("JobNameConflict", "InvalidSpec", "JobRejected"):
        return [
            Condition("Ready", FALSE, reason, message),
            Condition("Reconciling", TRUE, reason, message),
            Condition("Stalled", TRUE, reason, message),
        ]
    return [
        Condition("Ready", FALSE, reason, message),
        Condition("Reconciling", TRUE, reason, message),
        Condition("Stalled", FALSE, reason, ""),
    ]


def build_status(
    *,
    previous: Mapping[str, Any] | None,
    generation: int,
    job_name: str | None,
    outcome: JobOutcome,
    now: str,
) -> dict[str, Any]:
    """The complete status for one outcome; equal inputs give an equal status."""
    prev = previous or {}
    status: dict[str, Any] = {
        "phase": outcome.phase,
        "observedGeneration": generation,
    }
    if job_name:
        status["jobName"] = job_name
    same_job = bool(job_name) and prev.get("jobName") == job_name
    revision = outcome.revision or (
        prev.get("appliedRevision") if same_job and outcome.phase == SUCCEEDED else None
    )
    if revision:
        status["appliedRevision"] = revision
    started = outcome.started_at or (prev.get("startedAt") if same_job else None)
    if started:
        status["startedAt"] = started
    if outcome.completed_at:
        status["completedAt"] = outcome.completed_at
    if outcome.message:
        status["message"] = outcome.message
    status["conditions"] = merge_conditions(
        prev.get("conditions"),
        conditions_for(outcome.phase, outcome.reason, outcome.message),
        generation=generation,
        now=now,
    )
    return status


def same_status(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Whether two statuses say the same (transition times of unchanged conditions are kept
    by :func:`merge_conditions`, so plain equality is right)."""
    return dict(a or {}) == dict(b or {})


def finished_outcome(previous: Mapping[str, Any]) -> JobOutcome:
    """The recorded outcome of a finished Job that has since expired (TTL) or was deleted."""
    phase = str(previous.get("phase"))
    ready: Mapping[str, Any] = next(
        (c for c in previous.get("conditions") or () if c.get("type") == "Ready"),
        {},
    )
    return JobOutcome(
        phase=phase,
        reason=str(ready.get("reason") or ("Migrated" if phase == SUCCEEDED else "JobFailed")),
        message=str(previous.get("message") or ""),
        revision=previous.get("appliedRevision"),
        started_at=previous.get("startedAt"),
        completed_at=previous.get("completedAt"),
    )
