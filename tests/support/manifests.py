"""Small manifest builders for the tests that apply objects to a cluster."""

from __future__ import annotations

from typing import Any

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
BUSYBOX_IMAGE = "busybox:1.36"

# kwok stage (k8s/local/kwok-stages.yaml) that fails a labelled pod's containers with exit 1.
KWOK_FAIL_LABEL = "pod-container-running-failed.stage.kwok.x-k8s.io"
# kwok resource usage (kwokctl's default ClusterResourceUsage) read by metrics-server.
KWOK_CPU_ANNOTATION = "kwok.x-k8s.io/usage-cpu"


def restricted_security_context() -> dict[str, Any]:
    """A container securityContext that the Pod Security "restricted" profile admits."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container(
    name: str = "main",
    *,
    image: str = PAUSE_IMAGE,
    command: list[str] | None = None,
    cpu: str | None = None,
    security_context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": image}
    if command:
        c["command"] = command
    if cpu:
        c["resources"] = {"requests": {"cpu": cpu}, "limits": {"cpu": cpu}}
    if security_context is not None:
        c["securityContext"] = security_context
    return c


def deployment(
    name: str,
    *,
    replicas: int | None = 1,
    annotations: dict[str, str] | None = None,
    containers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}, "annotations": dict(annotations or {})},
            "spec": {"containers": containers or [container()]},
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": spec,
    }


def job(
    name: str,
    *,
    command: list[str],
    labels: dict[str, str] | None = None,
    backoff_limit: int = 0,
) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {
                "metadata": {"labels": dict(labels or {})},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [container(image=BUSYBOX_IMAGE, command=command)],
                },
            },
        },
    }


def pod(name: str, *, security_context: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [container(security_context=security_context)]},
    }
