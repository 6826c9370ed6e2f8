"""AppConfig: validation against the service's Settings, the ConfigMap, the config hash
and the status. Pure functions; the schema is the service's own (``app.core.config``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.core.config import validate_overrides
from fastship_operator import MANAGED_BY
from fastship_operator.conditions import FALSE, TRUE, Condition, merge_conditions
from fastship_operator.migrations import owner_reference

KIND = "AppConfig"
PLURAL = "appconfigs"
HASH_ANNOTATION = "fastship.dev/config-hash"
APPCONFIG_LABEL = "fastship.dev/appconfig"
HASH_LENGTH = 16


@dataclass(frozen=True)
class Validation:
    """The outcome of validating ``spec.settings``."""

    data: dict[str, str]
    problems: list[str]

    @property
    def valid(self) -> bool:
        return not self.problems


def validate(spec: Mapping[str, Any]) -> Validation:
    """Check ``spec.settings`` with the service's own :func:`validate_overrides`."""
    settings = spec.get("settings") or {}
    if not isinstance(settings, Mapping):
        return Validation({}, ["spec.settings: must be a map of strings"])
    data, problems = validate_overrides(settings)
    return Validation(data, [f"{p.key}: {p.message}" for p in problems])


def config_hash(data: Mapping[str, str]) -> str:
    """Hash of the ConfigMap data; the pod-template annotation that rolls the Deployment."""
    canonical = json.dumps(dict(data), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def configmap_name(appconfig_name: str) -> str:
    return f"{appconfig_name}-config"


def build_configmap(appconfig: Mapping[str, Any], data: Mapping[str, str]) -> dict[str, Any]:
    """ConfigMap ``<name>-config`` owned by the AppConfig, in environment-variable form."""
    meta = appconfig["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(meta["name"]),
            "namespace": meta.get("namespace"),
            "labels": {
                "app.kubernetes.io/name": "fastship",
                "app.kubernetes.io/component": "config",
                "app.kubernetes.io/managed-by": MANAGED_BY,
                APPCONFIG_LABEL: meta["name"][:63].rstrip("-._"),
            },
            "annotations": {HASH_ANNOTATION: config_hash(data)},
            "ownerReferences": [owner_reference(appconfig, KIND)],
        },
        "data": dict(data),
    }


def deployment_hash(deployment: Mapping[str, Any]) -> str | None:
    """The config-hash annotation currently on a Deployment's pod template."""
    template = (deployment.get("spec") or {}).get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(HASH_ANNOTATION)
    return str(value) if value is not None else None


def deployment_patch(hash_: str) -> dict[str, Any]:
    """The only change the operator makes to a Deployment: one pod-template annotation."""
    return {"spec": {"template": {"metadata": {"annotations": {HASH_ANNOTATION: hash_}}}}}


def build_status(
    *,
    previous: Mapping[str, Any] | None,
    generation: int,
    validation: Validation,
    applied: Condition,
    applied_hash: str | None,
    applied_at: str | None,
    configmap: str | None,
    now: str,
) -> dict[str, Any]:
    """Status of an AppConfig. ``applied_hash``, ``applied_at`` and ``configmap`` describe
    what is rolled out now: an invalid spec leaves the last valid configuration in place."""
    prev = previous or {}
    if validation.valid:
        valid = Condition("Valid", TRUE, "Valid", f"{len(validation.data)} setting(s) valid")
    else:
        valid = Condition(
            "Valid",
            FALSE,
            "InvalidSettings",
            f"{len(validation.problems)} problem(s): " + "; ".join(validation.problems),
        )
    status: dict[str, Any] = {"observedGeneration": generation}
    if applied_hash:
        status["configHash"] = applied_hash
    if configmap:
        status["configMapName"] = configmap
    if applied_at:
        status["appliedAt"] = applied_at
    status["conditions"] = merge_conditions(
        prev.get("conditions"), [valid, applied], generation=generation, now=now
    )
    return status


def applied_condition(
    *, validation: Validation, deployment: str, found: bool, hash_: str, previous_hash: str | None
) -> Condition:
    """Applied: whether the Deployment's pod template carries this spec's config hash."""
    if not validation.valid:
        kept = f" (hash {previous_hash})" if previous_hash else ""
        return Condition(
            "Applied",
            FALSE,
            "InvalidSettings",
            f"nothing applied: the last valid configuration{kept} stays in place",
        )
    if not found:
        return Condition(
            "Applied",
            FALSE,
            "DeploymentNotFound",
            f"Deployment {deployment} not found; the configuration is applied when it appears",
        )
    return Condition(
        "Applied", TRUE, "Applied", f"Deployment {deployment} runs config hash {hash_}"
    )
