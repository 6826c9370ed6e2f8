"""The chart's documentation and schema stay in step with values.yaml and the service."""

from __future__ import annotations

import json
from typing import Any

import yaml

from app.core.config import Settings
from tests.chart import valuesdoc
from tests.chart.conftest import CHART


def _schema() -> dict[str, Any]:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert isinstance(schema, dict)
    return schema


def test_every_value_is_documented() -> None:
    assert valuesdoc.undocumented() == []


def test_readme_values_table_matches_values_yaml() -> None:
    assert valuesdoc.readme_table() == valuesdoc.table(), (
        "charts/fastship/README.md's values table is stale: run `python -m tests.chart.valuesdoc`"
    )


def test_every_documented_value_is_typed_and_described_in_the_schema() -> None:
    schema = _schema()
    for doc in valuesdoc.parse():
        node = schema
        for part in doc.key.split("."):
            assert part in node.get("properties", {}), f"{doc.key} is not in values.schema.json"
            node = node["properties"][part]
        assert node.get("type") or node.get("anyOf"), f"{doc.key} has no type in the schema"
        assert node.get("description") == doc.description, f"{doc.key}: schema description"


def test_schema_rejects_unknown_keys_everywhere() -> None:
    """additionalProperties is false on every object that the chart itself defines."""
    open_maps = []

    def walk(node: dict[str, Any], path: str) -> None:
        if "properties" in node and node.get("additionalProperties") is not False:
            open_maps.append(path or "(root)")
        for key, child in node.get("properties", {}).items():
            walk(child, f"{path}.{key}" if path else key)

    walk(_schema(), "")
    # `global` is shared by an umbrella chart with all its subcharts: keys for the others pass.
    assert open_maps == ["global"]


def test_config_schema_lists_exactly_the_service_settings() -> None:
    config = _schema()["properties"]["config"]
    assert set(config["properties"]) == set(Settings.model_fields)
    assert all(p["type"] == "string" for p in config["properties"].values())


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["kubeVersion"] == ">=1.29.0-0"
    from app import __version__

    assert chart["appVersion"] == __version__.split("+")[0]


def test_readme_documents_what_operators_must_know() -> None:
    readme = (CHART / "README.md").read_text()
    for text in (
        "kubectl apply --server-side -f charts/fastship/crds/",
        "helm.sh/resource-policy: keep",
        "postgresql.mode",
        "migrations.mode",
        "existingSecret",
        "--wait",
    ):
        assert text in readme, text
