"""Metrics: a port of their own, the ServiceMonitor, the PrometheusRule (checked and unit
tested by promtool), the Grafana dashboard."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import app.core.metrics  # noqa: F401  (registers the service's metrics)
from app.core.config import Settings
from tests.chart.conftest import CHART, NAMESPACE, RELEASE, RenderErrorFn, RenderFn
from tests.support.kube import tools_bin

FULLNAME = f"{RELEASE}-fastship"
MONITORING = {
    "metrics": {
        "serviceMonitor": {
            "enabled": True,
            "namespace": "monitoring",
            "labels": {"release": "prom"},
            "scheme": "https",
            "tlsConfig": {"insecureSkipVerify": False, "serverName": "fastship"},
            "relabelings": [{"action": "replace", "targetLabel": "team", "replacement": "a"}],
            "metricRelabelings": [
                {"action": "drop", "sourceLabels": ["__name__"], "regex": "python_gc_.*"}
            ],
        },
        "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
        "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "apps"}},
    },
    "ingress": {"enabled": True},
    "httpRoute": {"enabled": True, "parentRefs": [{"name": "gw"}]},
}
# Series the rules and the dashboard read that the service does not export itself.
KUBE_STATE_METRICS = {
    "kube_job_failed",
    "kube_horizontalpodautoscaler_status_current_replicas",
    "kube_horizontalpodautoscaler_spec_max_replicas",
    "fastship_migration_phase",
    "fastship_appconfig_condition",
}


@pytest.fixture(scope="module")
def promtool() -> Path:
    tool = tools_bin() / "promtool"
    if not tool.exists():
        pytest.fail(f"promtool not found at {tool}: run `make tools`", pytrace=False)
    return tool


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def service_metric_names() -> set[str]:
    """Series names of the service's metric families (labelled ones have no samples yet)."""
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        if family.name.startswith("fastship_")
        for suffix in SUFFIXES[family.type]
    }


def series_in(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:fastship|kube)_[a-z_]+)\b", expr))


def test_metrics_are_not_routed_by_ingress_or_httproute(render: RenderFn) -> None:
    rendered = render(MONITORING)
    service = rendered.get("Service", FULLNAME)["spec"]["ports"]
    assert [(p["name"], p["port"], p["targetPort"]) for p in service] == [
        ("http", 80, "http"),
        ("metrics", 9090, "metrics"),
    ]
    ingress = rendered.get("Ingress", FULLNAME)["spec"]
    backends = [p["backend"] for r in ingress["rules"] for p in r["http"]["paths"]]
    assert backends == [{"service": {"name": FULLNAME, "port": {"name": "http"}}}]
    route = rendered.get("HTTPRoute", FULLNAME)["spec"]
    assert [b["port"] for r in route["rules"] for b in r["backendRefs"]] == [80]
    container = rendered.get("Deployment", FULLNAME)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FASTSHIP_METRICS_PORT"] == "9090"
    # Without a port of their own, the metrics stay on the API port: no metrics port at all.
    shared = render({"metrics": {"port": 0}})
    assert [p["name"] for p in shared.get("Service", FULLNAME)["spec"]["ports"]] == ["http"]


def test_service_monitor_options(render: RenderFn) -> None:
    monitor = render(MONITORING).get("ServiceMonitor", FULLNAME)
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": False, "serverName": "fastship"}
    assert endpoint["relabelings"][0]["targetLabel"] == "team"
    assert endpoint["metricRelabelings"][0]["action"] == "drop"
    assert endpoint["honorLabels"] is False


def test_service_monitor_needs_the_metrics_port(render_error: RenderErrorFn) -> None:
    error = render_error({"metrics": {"port": 0, "serviceMonitor": {"enabled": True}}})
    assert "metrics.serviceMonitor.enabled needs metrics.port" in error
    assert "/metrics/port" in render_error({"metrics": {"port": 8000}})


def rule_spec(render: RenderFn, values: dict[str, Any]) -> dict[str, Any]:
    spec = render(values).get("PrometheusRule", FULLNAME)["spec"]
    assert isinstance(spec, dict)
    return spec


def test_prometheus_rule_passes_promtool_check(
    render: RenderFn, promtool: Path, tmp_path: Path
) -> None:
    spec = rule_spec(render, MONITORING)
    alerts = [r["alert"] for r in spec["groups"][0]["rules"]]
    assert alerts == [
        "FastshipMigrationFailed",
        "FastshipConfigInvalid",
        "FastshipHighErrorRate",
        "FastshipDatabasePoolSaturated",
        "FastshipAutoscalerAtMaximum",
    ]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    proc = subprocess.run(
        [str(promtool), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 5 rules found" in proc.stdout
    # Every series a rule reads is one the service exports or kube-state-metrics gives.
    known = service_metric_names() | KUBE_STATE_METRICS
    for rule in spec["groups"][0]["rules"]:
        unknown = series_in(rule["expr"]) - known
        assert not unknown, f"{rule['alert']} reads unknown series {unknown}"
    # Without an HPA there is no HPA alert; additional rules are appended.
    fixed = rule_spec(
        render,
        {
            "autoscaling": {"enabled": False},
            "metrics": {
                "prometheusRule": {
                    "enabled": True,
                    "additionalRules": [{"record": "x:y", "expr": "sum(up)"}],
                }
            },
        },
    )
    names = [r.get("alert", r.get("record")) for r in fixed["groups"][0]["rules"]]
    assert "FastshipAutoscalerAtMaximum" not in names
    assert names[-1] == "x:y"


def test_prometheus_rule_alerts_fire_on_the_right_series(
    render: RenderFn, promtool: Path, tmp_path: Path
) -> None:
    """promtool's rule unit tests: each alert fires on series that mean trouble, and the
    error-rate and pool alerts stay quiet on healthy ones."""
    settings = Settings()
    pool_max = settings.db_pool_size + settings.db_max_overflow
    spec = rule_spec(render, MONITORING)
    # promtool compares annotations too; their templates are checked by `check rules`.
    for rule in spec["groups"][0]["rules"]:
        rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    ns, svc = NAMESPACE, FULLNAME
    base = f'namespace="{ns}", service="{svc}"'
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'fastship_http_requests_total{{{base}, method="GET", '
                        'route="/api/v1/items", status="500"}',
                        "values": "0+10x30",
                    },
                    {
                        "series": f'fastship_http_requests_total{{{base}, method="GET", '
                        'route="/api/v1/items", status="200"}',
                        "values": "0+90x30",
                    },
                    {
                        "series": f'fastship_db_pool_connections_in_use{{{base}, pod="web-1"}}',
                        "values": f"{pool_max}x30",
                    },
                    {
                        "series": f'fastship_db_pool_connections_in_use{{{base}, pod="web-2"}}',
                        "values": f"{pool_max - 1}x30",
                    },
                    {
                        "series": f'fastship_migration_phase{{namespace="{ns}", name="{svc}", '
                        'phase="Failed"}',
                        "values": "1x10",
                    },
                    {
                        "series": f'fastship_appconfig_condition{{namespace="{ns}", '
                        f'name="{svc}", type="Valid"}}',
                        "values": "0x10",
                    },
                    {
                        "series": "kube_horizontalpodautoscaler_status_current_replicas"
                        f'{{namespace="{ns}", horizontalpodautoscaler="{svc}"}}',
                        "values": "10x30",
                    },
                    {
                        "series": "kube_horizontalpodautoscaler_spec_max_replicas"
                        f'{{namespace="{ns}", horizontalpodautoscaler="{svc}"}}',
                        "values": "10x30",
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "20m",
                        "alertname": "FastshipHighErrorRate",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "namespace": ns,
                                    "service": svc,
                                }
                            }
                        ],
                    },
                    {
                        "eval_time": "20m",
                        "alertname": "FastshipDatabasePoolSaturated",
                        "exp_alerts": [
                            {"exp_labels": {"severity": "warning", "namespace": ns, "pod": "web-1"}}
                        ],
                    },
                    {
                        "eval_time": "5m",
                        "alertname": "FastshipMigrationFailed",
                        "exp_alerts": [
                            {"exp_labels": {"severity": "critical", "namespace": ns, "name": svc}}
                        ],
                    },
                    {
                        "eval_time": "8m",
                        "alertname": "FastshipConfigInvalid",
                        "exp_alerts": [
                            {"exp_labels": {"severity": "warning", "namespace": ns, "name": svc}}
                        ],
                    },
                    {
                        "eval_time": "20m",
                        "alertname": "FastshipAutoscalerAtMaximum",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "namespace": ns,
                                    "horizontalpodautoscaler": svc,
                                }
                            }
                        ],
                    },
                    # Not yet for long enough.
                    {"eval_time": "5m", "alertname": "FastshipHighErrorRate", "exp_alerts": []},
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    proc = subprocess.run(
        [str(promtool), "test", "rules", "tests.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_grafana_dashboard(render: RenderFn) -> None:
    configmap = render(MONITORING).get("ConfigMap", f"{FULLNAME}-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"]["grafana_folder"] == "apps"
    dashboard = json.loads(configmap["data"]["fastship.json"])
    assert dashboard["uid"] == "fastship"
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 6
    read = set().union(*(series_in(e) for e in exprs))
    unknown = read - service_metric_names()
    assert not unknown, f"the dashboard reads series the service does not export: {unknown}"
    # Every metric the service exports is on the dashboard (counters as their _total).
    exported = {
        f.name + SUFFIXES[f.type][0] if f.type != "histogram" else f.name
        for f in REGISTRY.collect()
        if f.name.startswith("fastship_")
    }
    shown = {re.sub(r"_(bucket|count|sum)$", "", s) for s in read}
    assert exported <= shown, exported - shown


def test_kube_state_metrics_config_names_the_series_the_rules_read() -> None:
    config = yaml.safe_load((CHART / "files" / "kube-state-metrics.yaml").read_text())
    produced = {
        f"{r['metricNamePrefix']}_{m['name']}"
        for r in config["spec"]["resources"]
        for m in r["metrics"]
    }
    assert produced == {"fastship_migration_phase", "fastship_appconfig_condition"}
