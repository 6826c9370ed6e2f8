"""The CRD upgrade path: charts/fastship-crds renders the CRDs as templates.

On the cluster the test works on a copy of that chart whose CRDs are moved to a group of
their own, so that the fastship CRDs other tests use are never touched.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import CHART, KUBE_VERSION, parse_objects
from tests.support.kube import Kube

CRDS_CHART = CHART.parent / "fastship-crds"


def render_crds(helm_bin: Path, chart: Path = CRDS_CHART, *args: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [str(helm_bin), "template", "crds", str(chart), "--kube-version", KUBE_VERSION, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return parse_objects(proc.stdout)


def test_crd_chart_renders_the_fastship_charts_crds(helm_bin: Path) -> None:
    """One source: the templates are the fastship chart's crds/ files, plus keep."""
    rendered = {o["metadata"]["name"]: o for o in render_crds(helm_bin)}
    sources = {}
    for path in sorted((CHART / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        sources[crd["metadata"]["name"]] = crd
    assert (
        sorted(rendered)
        == sorted(sources)
        == [
            "appconfigs.fastship.dev",
            "migrations.fastship.dev",
        ]
    )
    for name, crd in rendered.items():
        assert crd["spec"] == sources[name]["spec"], name
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    unkept = render_crds(helm_bin, CRDS_CHART, "--set", "keep=false")
    assert all("helm.sh/resource-policy" not in o["metadata"]["annotations"] for o in unkept)


@pytest.fixture
def crd_chart(tmp_path: Path, kube: Kube) -> Iterator[tuple[Path, str]]:
    """A copy of the CRD chart whose CRDs live in a group of their own; deleted afterwards."""
    group = f"t{secrets.token_hex(3)}.fastship.dev"
    dst = tmp_path / "fastship-crds"
    shutil.copytree(CRDS_CHART, dst)  # follows the crds-source link
    for path in (dst / "crds-source").glob("*.yaml"):
        path.write_text(path.read_text().replace("fastship.dev", group))
    try:
        yield dst, group
    finally:
        for plural in ("migrations", "appconfigs"):
            kube.kubectl("delete", "crd", f"{plural}.{group}", "--ignore-not-found", check=False)


def test_crds_are_upgraded_by_helm_upgrade_and_kept_on_uninstall(
    kube: Kube, namespace: str, crd_chart: tuple[Path, str]
) -> None:
    chart, group = crd_chart
    migrations = f"migrations.{group}"
    # As an earlier `helm install` of the fastship chart leaves them: created from crds/,
    # without any release's ownership.
    for path in sorted((chart / "crds-source").glob("*.yaml")):
        kube.kubectl("create", "-f", str(path))
    refused = kube.helm("install", "crds", str(chart), "-n", namespace, check=False)
    assert refused.returncode != 0
    assert "invalid ownership metadata" in refused.stderr

    # The adoption commands of the chart README, then the install succeeds.
    for plural in ("migrations", "appconfigs"):
        crd = f"crd/{plural}.{group}"
        kube.kubectl("label", "--overwrite", crd, "app.kubernetes.io/managed-by=Helm")
        kube.kubectl(
            "annotate", "--overwrite", crd,
            "meta.helm.sh/release-name=crds", f"meta.helm.sh/release-namespace={namespace}",
        )  # fmt: skip
    kube.helm("install", "crds", str(chart), "-n", namespace)
    live = kube.get("crd", migrations)
    assert live["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    spec_fields = live["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert "upgradeCheck" not in spec_fields["properties"]

    # A changed CRD (a new field) reaches the cluster with `helm upgrade`.
    source = chart / "crds-source" / "migrations.yaml"
    crd = yaml.safe_load(source.read_text())
    version = crd["spec"]["versions"][0]
    version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["upgradeCheck"] = {
        "type": "string",
        "description": "A field added by the upgrade.",
    }
    source.write_text(yaml.safe_dump(crd, sort_keys=False))
    chart_yaml = yaml.safe_load((chart / "Chart.yaml").read_text())
    chart_yaml["version"] = "0.1.1"
    (chart / "Chart.yaml").write_text(yaml.safe_dump(chart_yaml, sort_keys=False))
    kube.helm("upgrade", "crds", str(chart), "-n", namespace)
    live = kube.get("crd", migrations)
    spec_fields = live["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec_fields["properties"]["upgradeCheck"]["type"] == "string"
    # The API server serves the new field (it is not pruned from objects).
    obj = {
        "apiVersion": f"{group}/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": "check", "namespace": namespace},
        "spec": {
            "image": "fastship:0.1.0",
            "databaseSecretRef": {"name": "db", "key": "uri"},
            "upgradeCheck": "served",
        },
    }
    kube.apply(obj)
    assert kube.get(migrations, "check", namespace=namespace)["spec"]["upgradeCheck"] == "served"

    # Uninstall keeps the CRDs, and with them the custom resources.
    kube.helm("uninstall", "crds", "-n", namespace)
    assert kube.get("crd", migrations)["metadata"]["name"] == migrations
    assert kube.get(migrations, "check", namespace=namespace)["spec"]["upgradeCheck"] == "served"
