"""The Argo CD health checks the chart ships (files/argocd/*.lua), run in Lua 5.1.

Argo CD runs health checks with gopher-lua, a Lua 5.1; `lupa.lua51` is the reference Lua
5.1 interpreter. The sample resources carry the statuses that the operator's own status
builders write (fastship_operator.migrations.build_status, .appconfigs.build_status), one
per phase and condition the operator can reach, so a change of the operator's status that
the checks do not understand fails here.
"""

from __future__ import annotations

from typing import Any

import lupa.lua51 as lua51
import pytest

from fastship_operator import appconfigs
from fastship_operator import migrations as mg
from fastship_operator.conditions import Condition
from tests.chart.conftest import CHART

NOW = "2026-01-01T00:00:00Z"
SCRIPTS = CHART / "files" / "argocd"


def health(script: str, obj: dict[str, Any]) -> dict[str, str]:
    """Run one health script with ``obj`` as Argo CD does: a global `obj`, a returned table."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)

    def to_lua(value: Any) -> Any:
        if isinstance(value, dict):
            return lua.table_from({k: to_lua(v) for k, v in value.items()})
        if isinstance(value, list):
            return lua.table_from([to_lua(v) for v in value])
        return value

    lua.globals().obj = to_lua(obj)
    source = (SCRIPTS / script).read_text()
    result = lua.execute(source)
    assert result is not None, f"{script} returned nothing"
    out = dict(result)
    assert out["status"] in {"Healthy", "Progressing", "Degraded", "Suspended", "Missing"}
    assert isinstance(out.get("message"), str), out
    assert out["message"], out
    return out


def migration(status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "fastship.dev/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": "web", "namespace": "apps", "generation": generation},
        "spec": {"image": "fastship:0.1.0", "databaseSecretRef": {"name": "db", "key": "uri"}},
    }
    if status is not None:
        obj["status"] = status
    return obj


def migration_status(outcome: mg.JobOutcome) -> dict[str, Any]:
    return mg.build_status(
        previous=None, generation=1, job_name="web-migrate-abc", outcome=outcome, now=NOW
    )


MIGRATION_CASES = {
    "no status yet": (None, "Progressing", "operator"),
    "pending": (
        mg.JobOutcome(phase=mg.PENDING, reason="JobPending", message="Job created"),
        "Progressing",
        "Job created",
    ),
    "running": (
        mg.JobOutcome(phase=mg.RUNNING, reason="Migrating", message="pod web-1 running"),
        "Progressing",
        "pod web-1 running",
    ),
    "succeeded": (
        mg.JobOutcome(phase=mg.SUCCEEDED, reason="Migrated", message="at revision 0007"),
        "Healthy",
        "at revision 0007",
    ),
    "failed": (
        mg.JobOutcome(phase=mg.FAILED, reason="JobFailed", message="relation exists"),
        "Degraded",
        "relation exists",
    ),
    "stuck pending": (
        mg.JobOutcome(
            phase=mg.PENDING, reason="ImagePullBackOff", message="image fastship:9 not found"
        ),
        "Degraded",
        "ImagePullBackOff",
    ),
}


@pytest.mark.parametrize("case", list(MIGRATION_CASES))
def test_migration_health(case: str) -> None:
    outcome, expected, message = MIGRATION_CASES[case]
    status = None if outcome is None else migration_status(outcome)
    result = health("health-migration.lua", migration(status))
    assert result["status"] == expected, result
    assert message in result["message"], result


def test_migration_health_waits_for_the_current_generation() -> None:
    done = migration_status(mg.JobOutcome(phase=mg.SUCCEEDED, reason="Migrated", message="ok"))
    result = health("health-migration.lua", migration(done, generation=2))
    assert result["status"] == "Progressing"
    assert "generation 2" in result["message"]


def test_every_migration_phase_is_covered() -> None:
    phases = {o.phase for o, _, _ in MIGRATION_CASES.values() if o is not None}
    assert phases == {mg.PENDING, mg.RUNNING, mg.SUCCEEDED, mg.FAILED}
    assert "ImagePullBackOff" in mg.STUCK_REASONS


def appconfig(status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "fastship.dev/v1alpha1",
        "kind": "AppConfig",
        "metadata": {"name": "web", "namespace": "apps", "generation": generation},
        "spec": {"deploymentRef": {"name": "web"}, "settings": {"log_level": "DEBUG"}},
    }
    if status is not None:
        obj["status"] = status
    return obj


def appconfig_status(settings: dict[str, str], found: bool = True) -> dict[str, Any]:
    validation = appconfigs.validate({"settings": settings})
    applied = appconfigs.applied_condition(
        validation=validation, deployment="web", found=found, hash_="abc", previous_hash=None
    )
    return appconfigs.build_status(
        previous=None,
        generation=1,
        validation=validation,
        applied=applied,
        applied_hash="abc" if validation.valid and found else None,
        applied_at=NOW,
        configmap="web-config",
        now=NOW,
    )


def test_appconfig_health() -> None:
    assert health("health-appconfig.lua", appconfig(None))["status"] == "Progressing"

    healthy = health("health-appconfig.lua", appconfig(appconfig_status({"log_level": "DEBUG"})))
    assert healthy["status"] == "Healthy", healthy
    assert "config hash abc" in healthy["message"]

    invalid = health("health-appconfig.lua", appconfig(appconfig_status({"log_level": "LOUD"})))
    assert invalid["status"] == "Degraded", invalid
    assert "log_level" in invalid["message"]

    waiting = appconfig_status({"log_level": "DEBUG"}, found=False)
    result = health("health-appconfig.lua", appconfig(waiting))
    assert result["status"] == "Progressing", result
    assert "Deployment web not found" in result["message"]

    conflict = appconfig_status({"log_level": "DEBUG"})
    conflict["conditions"][1].update(
        status="False", reason="ConfigMapConflict", message="ConfigMap web-config is not ours"
    )
    result = health("health-appconfig.lua", appconfig(conflict))
    assert result["status"] == "Degraded", result
    assert "ConfigMapConflict" in result["message"]

    stale = health(
        "health-appconfig.lua",
        appconfig(appconfig_status({"log_level": "DEBUG"}), generation=3),
    )
    assert stale["status"] == "Progressing"
    assert "generation 3" in stale["message"]


def test_condition_types_the_checks_read() -> None:
    """The checks read Ready/Stalled (Migration) and Valid/Applied (AppConfig)."""
    status = migration_status(mg.JobOutcome(phase=mg.FAILED, reason="JobFailed", message="x"))
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Reconciling", "Stalled"]
    config = appconfig_status({})
    assert [c["type"] for c in config["conditions"]][:2] == ["Valid", "Applied"]
    assert Condition("Valid", "True", "Valid").type == "Valid"
