"""Bad values fail `helm template` with a message that names the key."""

from __future__ import annotations

from typing import Any

import pytest

from app.core.config import secret_field_names
from tests.chart.conftest import RenderErrorFn

BAD_VALUES: dict[str, tuple[dict[str, Any], list[str]]] = {
    # id: (values, every one of these must be in helm's error output)
    "unknown top-level key": ({"replicaCont": 3}, ["replicaCont", "not allowed"]),
    "unknown nested key": ({"image": {"tagg": "1.0"}}, ["/image", "tagg"]),
    "unknown deep key": (
        {"postgresql": {"bundled": {"persistence": {"sise": "1Gi"}}}},
        ["/postgresql/bundled/persistence", "sise"],
    ),
    "typo in securityContext": (
        {"securityContext": {"runAsNonroot": True}},
        ["/securityContext", "runAsNonroot"],
    ),
    "typo in resources": ({"resources": {"limit": {"cpu": "1"}}}, ["/resources", "limit"]),
    "wrong type": ({"replicaCount": "three"}, ["/replicaCount", "want integer"]),
    "wrong type bool": ({"autoscaling": {"enabled": "yes"}}, ["/autoscaling/enabled", "boolean"]),
    "negative replicas": ({"replicaCount": -1}, ["/replicaCount", "minimum"]),
    "zero min replicas": (
        {"autoscaling": {"enabled": True, "minReplicas": 0}},
        ["/autoscaling/minReplicas", "minimum"],
    ),
    "min > max replicas": (
        {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 3}},
        ["autoscaling.minReplicas (5)", "autoscaling.maxReplicas (3)"],
    ),
    "global pull secret without a name": (
        {"global": {"imagePullSecrets": [{"nam": "regcred"}]}},
        ["/global/imagePullSecrets/0"],
    ),
    "global registry with a scheme": (
        {"global": {"imageRegistry": "https://registry.example.com"}},
        ["/global/imageRegistry"],
    ),
    "enabled not a boolean": ({"enabled": "no"}, ["/enabled", "boolean"]),
    "commonAnnotations not strings": (
        {"commonAnnotations": {"example.com/n": 1}},
        ["/commonAnnotations/example.com~1n", "string"],
    ),
    "metrics port of the API": ({"metrics": {"port": 8000}}, ["/metrics/port"]),
    "metrics_port in config": ({"config": {"metrics_port": "9100"}}, ["config.metrics_port"]),
    "error ratio above 1": (
        {"metrics": {"prometheusRule": {"errorRatio": 5}}},
        ["/metrics/prometheusRule/errorRatio", "maximum"],
    ),
    "unknown postgres mode": (
        {"postgresql": {"mode": "sqlite"}},
        ["/postgresql/mode", "bundled", "external", "cloudnativepg"],
    ),
    "unknown migrations mode": (
        {"migrations": {"mode": "initContainer"}},
        ["/migrations/mode", "operator", "hook"],
    ),
    "operator mode without operator": (
        {"operator": {"enabled": False}},
        ["migrations.mode", "operator.enabled"],
    ),
    "external without secret": (
        {"postgresql": {"mode": "external"}},
        ["postgresql.external.existingSecret"],
    ),
    "unknown setting in config": ({"config": {"log_levle": "DEBUG"}}, ["/config", "log_levle"]),
    "non-string setting": ({"config": {"access_log": False}}, ["/config/access_log", "string"]),
    "setting owned by the chart": ({"config": {"host": "127.0.0.1"}}, ["config.host"]),
    "bad image digest": ({"image": {"digest": "sha256:xyz"}}, ["/image/digest"]),
    "bad pull policy": ({"image": {"pullPolicy": "Sometimes"}}, ["/image/pullPolicy"]),
    "httpRoute without parents": ({"httpRoute": {"enabled": True}}, ["httpRoute.parentRefs"]),
    "service account not created, no name": (
        {"serviceAccount": {"create": False}},
        ["serviceAccount.name"],
    ),
    "bad ingress pathType": (
        {"ingress": {"hosts": [{"host": "a", "paths": [{"path": "/", "pathType": "Glob"}]}]}},
        ["/ingress/hosts/0/paths/0/pathType"],
    ),
    "bad quantity": (
        {"postgresql": {"bundled": {"persistence": {"size": "8 gigs"}}}},
        ["/postgresql/bundled/persistence/size"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_bad_values_fail_naming_the_key(case: str, render_error: RenderErrorFn) -> None:
    values, expected = BAD_VALUES[case]
    error = render_error(values)
    missing = [text for text in expected if text not in error]
    assert not missing, f"error lacks {missing}:\n{error}"


@pytest.mark.parametrize("field", sorted(secret_field_names()))
def test_secret_settings_are_refused_in_config(field: str, render_error: RenderErrorFn) -> None:
    """Every secret field of Settings, as the service defines them today."""
    error = render_error({"config": {field: "postgresql://u:p@h/db"}})
    assert f"config.{field} is a secret setting" in error
    assert "secretKeyRef" in error


def test_bad_set_flag_names_the_key(render_error: RenderErrorFn) -> None:
    error = render_error(extra=("--set", "podDisruptionBudget.maxUnavailabel=1"))
    assert "maxUnavailabel" in error
