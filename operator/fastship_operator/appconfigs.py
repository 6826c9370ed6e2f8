"""AppConfig: validation against the service's Settings, the ConfigMap, the config hash
and the status. Pure functions; the schema is the service's own (``app.core.config``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from app.core.config import (
    ENV_PREFIX,
    Settings,
    SettingsError,
    env_name,
    secret_field_names,
    validate_overrides,
)
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
    """The outcome of validating ``spec.settings``; ``reason`` names the kind of problem."""

    data: dict[str, str]
    problems: list[str]
    reason: str = "InvalidSettings"

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


# Values that stand in for what the Deployment takes from Secrets (the operator never
# reads them): any real value passes the same checks.
_PLACEHOLDERS = {"database_url": "postgresql+psycopg://user@placeholder:5432/db"}
_PLACEHOLDER = "placeholder-" + "x" * 48


def _truthy(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on", "y", "t"}


def _field(env: str) -> str | None:
    """The Settings field an environment variable sets, if any."""
    if not env.upper().startswith(ENV_PREFIX):
        return None
    name = env[len(ENV_PREFIX) :].lower()
    return name if name in Settings.model_fields else None


def _settings_problems(fields: Mapping[str, str]) -> list[str]:
    try:
        Settings.model_validate(dict(fields)).check_can_serve()
    except ValidationError as exc:
        return [
            (str(e["loc"][0]) + ": " if e["loc"] else "") + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        ]
    except SettingsError as exc:
        return [str(exc)]
    return []


def check_against_deployment(
    appconfig_name: str,
    data: Mapping[str, str],
    deployment: Mapping[str, Any],
    gating_migrations: list[str],
) -> Validation:
    """Check valid overrides against the Deployment whose pods they land in.

    Refused: a setting that a container sets in its own ``env`` (``env`` wins over
    ``envFrom``, so it would never take effect); settings that, together with the
    container's environment, make the service refuse to start (e.g. ``database_host``
    where the Deployment sets the database URL); ``auto_migrate`` on a Deployment that a
    Migration gates (every starting pod would migrate, past the gate); and a Deployment
    whose containers do not load the ConfigMap at all.
    """
    name = deployment.get("metadata", {}).get("name", "")
    configmap = configmap_name(appconfig_name)
    pod = (deployment.get("spec") or {}).get("template", {}).get("spec") or {}
    containers = [
        c
        for c in pod.get("containers") or ()
        if any(
            (source.get("configMapRef") or {}).get("name") == configmap
            for source in c.get("envFrom") or ()
        )
    ]
    if not containers:
        return Validation(
            dict(data),
            [
                f"no container of Deployment {name} loads ConfigMap {configmap} "
                f"(envFrom: [{{configMapRef: {{name: {configmap}}}}}]): the settings "
                "could not take effect"
            ],
            "NotLoadedByDeployment",
        )
    problems: list[str] = []
    secrets = secret_field_names()
    wanted = {_field(key): value for key, value in data.items()}
    for container in containers:
        where = f"container {container.get('name')} of Deployment {name}"
        env_fields: dict[str, str] = {}
        set_by_env: set[str] = set()
        for entry in container.get("env") or ():
            field = _field(str(entry.get("name", "")))
            if field is None:
                continue
            set_by_env.add(field)
            if "value" in entry and field not in secrets:
                env_fields[field] = str(entry["value"])
            elif field in secrets:
                env_fields[field] = _PLACEHOLDERS.get(field, _PLACEHOLDER)
        for field in sorted(set_by_env & set(wanted)):
            problems.append(
                f"{env_name(field)}: {where} sets it in env, which overrides the ConfigMap: "
                "remove it from the AppConfig (or from the Deployment's env)"
            )
        if problems:
            continue
        before = _settings_problems(env_fields)
        after = _settings_problems({**env_fields, **{k: v for k, v in wanted.items() if k}})
        if not before and after:
            problems.extend(f"with the environment of {where}: {p}" for p in after)
    auto = wanted.get("auto_migrate")
    if auto is not None and _truthy(auto) and gating_migrations:
        problems.append(
            f"{env_name('auto_migrate')}: Migration {', '.join(gating_migrations)} gates "
            f"Deployment {name}; with auto_migrate every starting pod would migrate, past "
            "that gate: remove it (the Migration's Job migrates)"
        )
    return Validation(dict(data), problems, "ConflictsWithDeployment" if problems else "Valid")


def claimant(appconfigs: list[Mapping[str, Any]], deployment: str) -> str | None:
    """Of the AppConfigs that reference ``deployment``, the one that configures it: the
    oldest (then by name). The others are refused, or they would roll it in turn."""
    claims = [
        a
        for a in appconfigs
        if str(((a.get("spec") or {}).get("deploymentRef") or {}).get("name") or "") == deployment
        and not (a.get("metadata") or {}).get("deletionTimestamp")
    ]
    if not claims:
        return None
    first = min(
        claims,
        key=lambda a: (str(a["metadata"].get("creationTimestamp") or ""), a["metadata"]["name"]),
    )
    return str(first["metadata"]["name"])


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


def owner_name(configmap: Mapping[str, Any]) -> str | None:
    """Name of the AppConfig that controls a ConfigMap, if any."""
    for ref in (configmap.get("metadata") or {}).get("ownerReferences") or ():
        if (
            ref.get("controller")
            and ref.get("kind") == KIND
            and str(ref.get("apiVersion", "")).startswith("fastship.dev/")
        ):
            return str(ref.get("name"))
    return None


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
            validation.reason,
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
        prev.get("conditions"),
        [valid, applied, *readiness(valid, applied)],
        generation=generation,
        now=now,
    )
    return status


# Applied=False reasons that change by themselves (no one needs to act).
TRANSIENT = frozenset({"DeploymentNotFound"})


def readiness(valid: Condition, applied: Condition) -> list[Condition]:
    """Ready / Reconciling / Stalled, as kstatus (Flux, Argo CD, kpt) reads them."""
    if valid.status == TRUE and applied.status == TRUE:
        return [
            Condition("Ready", TRUE, applied.reason, applied.message),
            Condition("Reconciling", FALSE, applied.reason, ""),
            Condition("Stalled", FALSE, applied.reason, ""),
        ]
    cause = valid if valid.status != TRUE else applied
    if cause.reason in TRANSIENT:
        return [
            Condition("Ready", FALSE, cause.reason, cause.message),
            Condition("Reconciling", TRUE, cause.reason, cause.message),
            Condition("Stalled", FALSE, cause.reason, ""),
        ]
    return [
        Condition("Ready", FALSE, cause.reason, cause.message),
        Condition("Reconciling", FALSE, cause.reason, ""),
        Condition("Stalled", TRUE, cause.reason, cause.message),
    ]


def applied_condition(
    *, validation: Validation, deployment: str, found: bool, hash_: str, previous_hash: str | None
) -> Condition:
    """Applied: whether the Deployment's pod template carries this spec's config hash."""
    if not validation.valid:
        kept = f" (hash {previous_hash})" if previous_hash else ""
        return Condition(
            "Applied",
            FALSE,
            validation.reason,
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
