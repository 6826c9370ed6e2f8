"""Every case of the values matrix through the real API server and admission (dry run).

`kubectl apply --dry-run=server` runs the API server's own validation, defaulting and
admission, Pod Security included, without storing anything. Pod Security enforces on
Pods and only warns on Deployments, StatefulSets and Jobs, so the namespace also warns
at "restricted", and any warning fails the test.
"""

from __future__ import annotations

import pytest
import yaml

from tests.chart.cases import MATRIX
from tests.chart.checks import FOREIGN_KINDS
from tests.chart.conftest import CHART, RenderFn
from tests.support.kube import Kube


@pytest.fixture
def checked_namespace(kube: Kube, restricted_namespace: str) -> str:
    kube.kubectl(
        "label",
        "namespace",
        restricted_namespace,
        "pod-security.kubernetes.io/warn=restricted",
        "pod-security.kubernetes.io/warn-version=latest",
    )
    # The documented CRD upgrade path; also installs them for the custom resources.
    kube.kubectl("apply", "--server-side", "-f", str(CHART / "crds"))
    for crd in ("migrations.fastship.dev", "appconfigs.fastship.dev"):
        kube.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    return restricted_namespace


def test_matrix_passes_the_api_server_and_admission(
    kube: Kube, checked_namespace: str, render: RenderFn
) -> None:
    ns = checked_namespace
    problems: list[str] = []
    for case, values in MATRIX.items():
        rendered = render(values, kube_version=kube.version + ".0")
        objects = [o for o in rendered.objects if o["kind"] not in FOREIGN_KINDS]
        for obj in objects:
            obj["metadata"]["namespace"] = ns
        proc = kube.kubectl(
            "apply",
            "--dry-run=server",
            "--namespace",
            ns,
            "-f",
            "-",
            input=yaml.safe_dump_all(objects),
            check=False,
        )
        if proc.returncode != 0 or "Warning" in proc.stderr:
            problems.append(f"{case}: {proc.stderr.strip()}")
        else:
            assert proc.stdout.count("(server dry run)") == len(objects), proc.stdout
    assert not problems, "\n".join(problems)
