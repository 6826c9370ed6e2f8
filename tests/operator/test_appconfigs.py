"""Unit tests of AppConfig validation, ConfigMap, hash and status (no cluster)."""

from __future__ import annotations

from typing import Any

from fastship_operator import appconfigs as ac
from fastship_operator.conditions import Condition
from tests.support.conditions import condition

UID = "9b1c0f7e-0000-4000-8000-000000000002"


def appconfig(settings: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "fastship.dev/v1alpha1",
        "kind": "AppConfig",
        "metadata": {"name": "fastship", "namespace": "shop", "uid": UID, "generation": 2},
        "spec": {"deploymentRef": {"name": "fastship"}, "settings": settings or {}},
    }


def test_valid_settings_become_environment_variables() -> None:
    v = ac.validate(
        {"settings": {"log_level": "DEBUG", "FASTSHIP_ACCESS_TOKEN_EXPIRE_MINUTES": "15"}}
    )
    assert v.valid, v.problems
    assert v.data == {"FASTSHIP_LOG_LEVEL": "DEBUG", "FASTSHIP_ACCESS_TOKEN_EXPIRE_MINUTES": "15"}


def test_every_problem_is_listed() -> None:
    v = ac.validate(
        {
            "settings": {
                "log_level": "LOUD",
                "no_such_setting": "1",
                "jwt_secret_key": "x" * 40,
                "FASTSHIP_DATABASE_URL": "postgresql://u:p@h/db",
            }
        }
    )
    assert not v.valid
    text = "; ".join(v.problems)
    assert "no_such_setting: unknown setting" in text
    assert "jwt_secret_key: is a secret" in text
    assert "FASTSHIP_DATABASE_URL: is a secret" in text
    assert "log_level" in text
    assert len(v.problems) == 4


def test_a_removed_setting_says_what_to_do() -> None:
    v = ac.validate({"settings": {"event_loop": "uvloop"}})
    assert not v.valid
    assert v.problems == [
        "event_loop: is no longer a setting: `serve` runs on asyncio's event loop "
        "(bench/README.md compares it with uvloop); remove the variable"
    ]


def test_settings_must_be_a_map() -> None:
    v = ac.validate({"settings": ["log_level=DEBUG"]})
    assert v.problems == ["spec.settings: must be a map of strings"]


def test_no_settings_is_valid_and_empty() -> None:
    v = ac.validate({})
    assert v.valid
    assert v.data == {}


def test_hash_depends_on_data_only() -> None:
    a = ac.config_hash(
        {"FASTSHIP_LOG_LEVEL": "DEBUG", "FASTSHIP_ACCESS_TOKEN_EXPIRE_MINUTES": "15"}
    )
    b = ac.config_hash(
        {"FASTSHIP_ACCESS_TOKEN_EXPIRE_MINUTES": "15", "FASTSHIP_LOG_LEVEL": "DEBUG"}
    )
    assert a == b
    assert len(a) == ac.HASH_LENGTH
    assert a != ac.config_hash({"FASTSHIP_LOG_LEVEL": "INFO"})


def test_configmap_is_owned_named_and_hashed() -> None:
    data = {"FASTSHIP_LOG_LEVEL": "DEBUG"}
    cm = ac.build_configmap(appconfig(), data)
    assert cm["metadata"]["name"] == "fastship-config"
    assert cm["metadata"]["namespace"] == "shop"
    assert cm["data"] == data
    assert cm["metadata"]["annotations"][ac.HASH_ANNOTATION] == ac.config_hash(data)
    (owner,) = cm["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("AppConfig", UID, True)


def test_deployment_patch_touches_one_annotation() -> None:
    assert ac.deployment_patch("abc") == {
        "spec": {"template": {"metadata": {"annotations": {"fastship.dev/config-hash": "abc"}}}}
    }
    deployment = {"spec": {"template": {"metadata": {"annotations": {ac.HASH_ANNOTATION: "abc"}}}}}
    assert ac.deployment_hash(deployment) == "abc"
    assert ac.deployment_hash({"spec": {"template": {}}}) is None


def test_invalid_status_keeps_the_applied_configuration() -> None:
    previous = {
        "configHash": "1111",
        "configMapName": "fastship-config",
        "appliedAt": "2024-05-01T10:00:00Z",
    }
    v = ac.validate({"settings": {"log_level": "LOUD"}})
    applied = ac.applied_condition(
        validation=v, deployment="fastship", found=True, hash_="", previous_hash="1111"
    )
    status = ac.build_status(
        previous=previous,
        generation=5,
        validation=v,
        applied=applied,
        applied_hash="1111",
        applied_at="2024-05-01T10:00:00Z",
        configmap="fastship-config",
        now="2024-05-01T11:00:00Z",
    )
    assert status["configHash"] == "1111"
    assert status["observedGeneration"] == 5
    valid = condition(status, "Valid")
    assert valid["status"] == "False"
    assert valid["reason"] == "InvalidSettings"
    assert valid["message"].startswith("1 problem(s): log_level")
    assert condition(status, "Applied")["status"] == "False"
    assert "(hash 1111) stays in place" in condition(status, "Applied")["message"]


def test_valid_status() -> None:
    v = ac.validate({"settings": {"log_level": "DEBUG"}})
    hash_ = ac.config_hash(v.data)
    applied = ac.applied_condition(
        validation=v, deployment="fastship", found=True, hash_=hash_, previous_hash=None
    )
    status = ac.build_status(
        previous=None,
        generation=1,
        validation=v,
        applied=applied,
        applied_hash=hash_,
        applied_at="t",
        configmap="fastship-config",
        now="t",
    )
    assert condition(status, "Valid")["status"] == "True"
    assert condition(status, "Applied") == {
        "type": "Applied",
        "status": "True",
        "reason": "Applied",
        "message": f"Deployment fastship runs config hash {hash_}",
        "observedGeneration": 1,
        "lastTransitionTime": "t",
    }
    assert status["configMapName"] == "fastship-config"


def test_missing_deployment_is_reported() -> None:
    v = ac.validate({})
    c = ac.applied_condition(
        validation=v, deployment="web", found=False, hash_="h", previous_hash=None
    )
    assert c == Condition(
        "Applied",
        "False",
        "DeploymentNotFound",
        "Deployment web not found; the configuration is applied when it appears",
    )
