"""Checks that every rendering of the chart must pass, whatever the values."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import yaml
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

from tests.chart.conftest import CHART, NAMESPACE, Rendered

# Kinds from CRDs that are not part of this chart; kubernetes-validate has no schema for
# them, so the tests assert their shape directly.
FOREIGN_KINDS = {"Cluster", "HTTPRoute", "ServiceMonitor"}
LABELS = (
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
)
WORKLOADS = {"Deployment", "StatefulSet", "Job", "Pod"}
CLUSTER_SCOPED = {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Namespace"}


@cache
def crd_schemas() -> dict[str, dict[str, Any]]:
    """Kind -> openAPIV3Schema of the chart's own CRDs (crds/)."""
    schemas: dict[str, dict[str, Any]] = {}
    for path in sorted((CHART / "crds").glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd:
                continue
            for version in crd["spec"]["versions"]:
                key = f"{crd['spec']['group']}/{version['name']}/{crd['spec']['names']['kind']}"
                schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


def validate(obj: dict[str, Any], kube_version: str) -> None:
    """Strict schema validation: Kubernetes' own schemas, or the chart's CRDs."""
    kind = obj["kind"]
    crd_key = f"{obj['apiVersion']}/{kind}"
    if crd_key in crd_schemas():
        jsonschema.validate(obj, crd_schemas()[crd_key])
        return
    if kind in FOREIGN_KINDS:
        return
    errors = sorted(
        _validator(kube_version, obj["apiVersion"], kind).iter_errors(obj), key=lambda e: e.path
    )
    where = f"{kind}/{obj['metadata']['name']}"
    problems = "; ".join(f"{e.message} at {'.'.join(str(p) for p in e.path)}" for e in errors[:5])
    assert not errors, f"{where} invalid for Kubernetes {kube_version}: {problems}"


@cache
def _validator(kube_version: str, api_version: str, kind: str) -> Any:
    """kubernetes-validate's strict schema of one kind, built once per test session.

    (kubernetes_validate.validate() does the same but parses the schema files on every
    call, which made the matrix several times slower.)
    """
    minor = ".".join(kube_version.split(".")[:2])
    schema_dir = f"kubernetes-json-schema/v{minor}.0-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = kv_utils.schema_contents(
            f"{schema_dir}/{kind.lower()}-{group_version}.json", kube_version
        )
    except FileNotFoundError:
        raise AssertionError(
            f"kubernetes-validate has no schema for {api_version} {kind} in {schema_dir}"
        ) from None
    definitions = kv_utils.schema_contents(f"{schema_dir}/_definitions.json", kube_version)
    registry: Registry[Any] = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(definitions) @ registry
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    kind = obj["kind"]
    if kind == "Pod":
        return dict(obj["spec"])
    if kind in {"Deployment", "StatefulSet", "Job"}:
        return dict(obj["spec"]["template"]["spec"])
    return None


def containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from spec.get("initContainers", []) or []
    yield from spec.get("containers", []) or []


def assert_restricted(obj: dict[str, Any]) -> None:
    """What Pod Security "restricted" asks, plus a read-only root and resource requests."""
    spec = pod_spec(obj)
    assert spec is not None
    where = f"{obj['kind']}/{obj['metadata']['name']}"
    psc = spec.get("securityContext") or {}
    assert psc.get("runAsNonRoot") is True, f"{where}: pod runAsNonRoot"
    assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{where}: seccomp"
    # Service links would put FASTSHIP_PORT=tcp://... into a release named "fastship".
    assert spec.get("enableServiceLinks") is False, f"{where}: enableServiceLinks"
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(host), f"{where}: {host}"
    for volume in spec.get("volumes", []) or []:
        assert "hostPath" not in volume, f"{where}: hostPath volume {volume['name']}"
    for c in containers(spec):
        at = f"{where} container {c['name']}"
        sc = c.get("securityContext") or {}
        assert sc.get("allowPrivilegeEscalation") is False, f"{at}: allowPrivilegeEscalation"
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{at}: drop ALL"
        assert not sc.get("capabilities", {}).get("add"), f"{at}: added capabilities"
        assert sc.get("readOnlyRootFilesystem") is True, f"{at}: readOnlyRootFilesystem"
        assert sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{at}: runAsNonRoot"
        assert (sc.get("runAsUser", psc.get("runAsUser")) or 0) > 0, f"{at}: runAsUser"
        assert not sc.get("privileged"), f"{at}: privileged"
        requests = (c.get("resources") or {}).get("requests") or {}
        assert {"cpu", "memory"} <= set(requests), f"{at}: requests {requests}"
        assert (c.get("resources") or {}).get("limits", {}).get("memory"), f"{at}: memory limit"
        mounts = {m["mountPath"] for m in c.get("volumeMounts", []) or []}
        if c["image"].rsplit("/", 1)[-1].startswith("postgres:"):
            assert {"/tmp", "/var/run/postgresql"} <= mounts, f"{at}: writable dirs"
        else:
            assert "/tmp" in mounts, f"{at}: /tmp emptyDir for the read-only root"
            # The image's entrypoint (tini) stays PID 1: roles are chosen with args.
            assert "command" not in c, f"{at}: uses command instead of args"


def secret_values(rendered: Rendered) -> set[str]:
    """Plain values of every rendered Secret."""
    values: set[str] = set()
    for secret in rendered.all("Secret"):
        for value in (secret.get("data") or {}).values():
            values.add(base64.b64decode(value).decode())
        values.update((secret.get("stringData") or {}).values())
    return values


def assert_common(rendered: Rendered, kube_version: str, namespace: str = NAMESPACE) -> None:
    """Every check that holds for any values."""
    assert rendered.objects, "nothing rendered"
    for obj in rendered.objects:
        validate(obj, kube_version)
        # Set on every namespaced object, so that `helm template | kubectl apply` (and an
        # umbrella chart's render) lands in the namespace it was rendered for.
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"].get("namespace") == namespace, (
                f"{obj['kind']}/{obj['metadata']['name']}: metadata.namespace "
                f"{obj['metadata'].get('namespace')!r}, expected {namespace!r}"
            )
        labels = obj["metadata"].get("labels") or {}
        missing = [k for k in LABELS if k not in labels]
        assert not missing, f"{obj['kind']}/{obj['metadata']['name']} lacks labels {missing}"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        if obj["kind"] in WORKLOADS:
            assert_restricted(obj)
        if obj["kind"] in {"Deployment", "StatefulSet", "Job"}:
            template_labels = obj["spec"]["template"]["metadata"]["labels"]
            assert not [k for k in LABELS if k not in template_labels], obj["metadata"]["name"]
    # Secret values appear only in Secrets: not in ConfigMaps, annotations, custom resources.
    # (long values only: the generated ones; "username: fastship" is no secret)
    secrets = {v for v in secret_values(rendered) if len(v) >= 16}
    for obj in rendered.objects:
        if obj["kind"] == "Secret":
            continue
        text = json.dumps(obj)
        leaked = [v[:4] + "..." for v in secrets if v in text]
        assert not leaked, f"secret values {leaked} in {obj['kind']}/{obj['metadata']['name']}"
    # The operator owns this annotation; a rendered value would fight it on every upgrade.
    for deploy in rendered.all("Deployment"):
        annotations = deploy["spec"]["template"]["metadata"].get("annotations") or {}
        assert "fastship.dev/config-hash" not in annotations


def read_rbac_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load((CHART / "files" / "operator-rbac-rules.yaml").read_text())
    assert isinstance(rules, list)
    return rules
