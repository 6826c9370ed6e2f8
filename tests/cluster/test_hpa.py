"""The built control plane autoscales, as the chart's HPA needs: metrics-server serves
the metrics API with the CPU usage that kwok reports, and the HPA controller of
kube-controller-manager reads it and scales a Deployment up.

kwok derives each pod's CPU usage from its ``kwok.x-k8s.io/usage-cpu`` annotation. The
local cluster shortens the HPA sync period (5 s).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pytest

from tests.support.kube import Kube
from tests.support.manifests import KWOK_CPU_ANNOTATION, container, deployment
from tests.support.waiting import wait_until

MAX_REPLICAS = 4


def hpa(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 1,
            "maxReplicas": MAX_REPLICAS,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 50},
                    },
                }
            ],
        },
    }


def set_usage(kube: Kube, namespace: str, name: str, cpu: str) -> None:
    """Roll the Deployment's pods to a new simulated CPU usage."""
    patch = {"spec": {"template": {"metadata": {"annotations": {KWOK_CPU_ANNOTATION: cpu}}}}}
    kube.kubectl(
        "patch", "deployment", name, "-n", namespace, "--type=merge", "-p", json.dumps(patch)
    )


def replicas(kube: Kube, namespace: str, name: str) -> int:
    return int(kube.get("deployment", name, namespace=namespace)["spec"].get("replicas", 0))


@pytest.mark.kwok
def test_hpa_scales_up_on_cpu_from_metrics_server(kube: Kube, namespace: str) -> None:
    # CPU usage is simulated with a kwok annotation; on other clusters deselect this
    # test with -m "not kwok" (make test-kind does).
    assert kube.kwok, "needs kwok nodes to simulate CPU usage: run with -m 'not kwok'"
    name = "busy"
    app = deployment(
        name,
        replicas=1,
        annotations={KWOK_CPU_ANNOTATION: "20m"},
        containers=[container(cpu="100m")],
    )
    kube.apply([app, hpa(name)], namespace=namespace)
    kube.kubectl("rollout", "status", f"deployment/{name}", "-n", namespace, "--timeout=120s")

    def hpa_utilization() -> int | None:
        status = kube.get("hpa", name, namespace=namespace).get("status", {})
        for metric in status.get("currentMetrics") or []:
            current = metric.get("resource", {}).get("current", {})
            if "averageUtilization" in current:
                return int(current["averageUtilization"])
        return None

    # metrics-server needs two scrapes (15 s apart) before a pod has a CPU rate.
    low = wait_until(hpa_utilization, timeout=120, interval=2, what="the HPA to read pod CPU")
    assert low < 50, f"utilization {low}% with usage 20m of a 100m request"
    assert replicas(kube, namespace, name) == 1

    start = time.monotonic()
    set_usage(kube, namespace, name, "200m")  # 200% of the request, target 50%
    wait_until(
        lambda: replicas(kube, namespace, name) == MAX_REPLICAS,
        timeout=240,
        interval=2,
        what=f"the HPA to scale {name} up to {MAX_REPLICAS}",
    )
    sys.stderr.write(f"\n[hpa] scaled up in {time.monotonic() - start:.0f}s\n")
