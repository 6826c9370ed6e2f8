"""API server behaviour the chart and operator rely on: admission, CRDs, server-side dry run."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.manifests import deployment, pod, restricted_security_context
from tests.support.kube import Kube

PSA_REFUSAL = 'is forbidden: violates PodSecurity "restricted:latest"'


def privileged_pod(name: str) -> dict[str, Any]:
    return pod(name, security_context={"privileged": True})


def test_restricted_namespace_rejects_privileged_pod(kube: Kube, restricted_namespace: str) -> None:
    ns = kube.get("namespace", restricted_namespace)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"

    proc = kube.apply(privileged_pod("priv"), namespace=restricted_namespace, check=False)
    assert proc.returncode != 0
    assert f'pods "priv" {PSA_REFUSAL}' in proc.stderr
    assert (
        'privileged (container "main" must not set securityContext.privileged=true)' in proc.stderr
    )
    assert (
        kube.kubectl("get", "pod", "priv", "-n", restricted_namespace, check=False).returncode != 0
    )

    # A pod that meets the profile is admitted, so the refusal above was about privilege.
    kube.apply(
        pod("fine", security_context=restricted_security_context()), namespace=restricted_namespace
    )
    kube.kubectl(
        "wait", "--for=condition=Ready", "pod/fine", "-n", restricted_namespace, "--timeout=60s"
    )


def test_unlabelled_namespace_admits_privileged_pod(kube: Kube, namespace: str) -> None:
    kube.apply(privileged_pod("priv"), namespace=namespace)
    kube.kubectl("wait", "--for=condition=Ready", "pod/priv", "-n", namespace, "--timeout=60s")


def test_server_side_dry_run(kube: Kube, namespace: str, restricted_namespace: str) -> None:
    proc = kube.apply(deployment("dry"), "--dry-run=server", namespace=namespace)
    assert "deployment.apps/dry created (server dry run)" in proc.stdout
    assert kube.kubectl("get", "deployment", "dry", "-n", namespace, check=False).returncode != 0

    # The server validates the object ...
    bad = deployment("dry")
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Sometimes"
    proc = kube.apply(bad, "--dry-run=server", namespace=namespace, check=False)
    assert proc.returncode != 0
    assert "imagePullPolicy" in proc.stderr
    assert "Unsupported value" in proc.stderr

    unknown = deployment("dry")
    unknown["spec"]["replicaz"] = 2
    proc = kube.apply(
        unknown, "--dry-run=server", "--validate=strict", namespace=namespace, check=False
    )
    assert proc.returncode != 0
    assert 'unknown field "spec.replicaz"' in proc.stderr

    # ... and runs admission.
    proc = kube.apply(
        privileged_pod("priv"), "--dry-run=server", namespace=restricted_namespace, check=False
    )
    assert proc.returncode != 0
    assert PSA_REFUSAL in proc.stderr


def widget_crd(group: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                "listKind": "WidgetList",
            },
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["size"],
                                    "properties": {"size": {"type": "integer", "minimum": 1}},
                                },
                                "status": {
                                    "type": "object",
                                    "properties": {"phase": {"type": "string"}},
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture
def crd_group(kube: Kube) -> Iterator[str]:
    """A unique API group whose CRD (cluster-scoped) is deleted after the test."""
    group = f"t{secrets.token_hex(4)}.fastship.dev"
    try:
        yield group
    finally:
        kube.kubectl(
            "delete", "crd", f"widgets.{group}", "--wait=false", "--ignore-not-found", check=False
        )


def test_crd_registers_and_serves(kube: Kube, namespace: str, crd_group: str) -> None:
    kube.apply(widget_crd(crd_group))
    kube.kubectl("wait", "--for=condition=Established", f"crd/widgets.{crd_group}", "--timeout=60s")

    resources = kube.kubectl(
        "api-resources", f"--api-group={crd_group}", "-o", "name"
    ).stdout.split()
    assert resources == [f"widgets.{crd_group}"]

    widget = {
        "apiVersion": f"{crd_group}/v1alpha1",
        "kind": "Widget",
        "metadata": {"name": "w1"},
        "spec": {"size": 3},
    }
    kube.apply(widget, namespace=namespace)
    got = kube.get(f"widgets.{crd_group}", "w1", namespace=namespace)
    assert got["spec"] == {"size": 3}

    # The status subresource takes status writes; the printer columns show them.
    kube.kubectl(
        "patch", f"widgets.{crd_group}", "w1", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": {"phase": "Ready"}}),
    )  # fmt: skip
    table = kube.kubectl("get", f"widgets.{crd_group}", "w1", "-n", namespace).stdout
    assert table.split("\n")[0].split() == ["NAME", "SIZE", "PHASE"]
    assert table.split("\n")[1].split()[:3] == ["w1", "3", "Ready"]

    # The OpenAPI schema is enforced.
    bad = dict(widget, metadata={"name": "w2"}, spec={"size": 0})
    proc = kube.apply(bad, namespace=namespace, check=False)
    assert proc.returncode != 0
    assert "spec.size" in proc.stderr
    assert "should be greater than or equal to 1" in proc.stderr
