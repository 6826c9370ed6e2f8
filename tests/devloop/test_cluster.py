"""The profiles' values installed for real: `helm upgrade --install` as skaffold runs it.

On the local control plane by default (real API server, admission, controllers and HPA;
kwok runs no containers), or on the kind cluster with
`FASTSHIP_KUBECONFIG=<kind kubeconfig>` (`make test-kind`). The image is a name only:
these tests look at what the API server admits and what the controllers do with it,
not at running containers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.devloop import skaffoldcfg
from tests.devloop.skaffoldcfg import REPO_ROOT, effective, load, release
from tests.support.kube import Kube
from tests.support.waiting import wait_until

SERVER = "app.kubernetes.io/component=server"


def install(kube: Kube, namespace: str, profile: str, tmp: Path) -> dict[str, Any]:
    """Install the release with the profile's values; returns the effective config."""
    config = effective(load(), profile)
    rel = release(config)
    values: list[str] = []
    for path in skaffoldcfg.helm_value_files(config, "fastship", "8f3c1d" + "0" * 58, tmp):
        values += ["--values", str(path)]
    kube.helm(
        "upgrade",
        "--install",
        rel["name"],
        str(REPO_ROOT / rel["chartPath"]),
        "--namespace",
        namespace,
        *values,
    )
    return config


def server_pods(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    return list(kube.get("pods", namespace=namespace, selector=SERVER)["items"])


def wait_for_server_pods(kube: Kube, namespace: str, count: int) -> list[dict[str, Any]]:
    """Wait until the ReplicaSet made ``count`` server pods; on time-out, say why not."""
    try:
        wait_until(
            lambda: len(server_pods(kube, namespace)) == count,
            timeout=60,
            what=f"{count} server pod(s)",
        )
    except AssertionError as exc:
        events = kube.get("events", namespace=namespace)["items"]
        # "pods "fastship-7c9..." is forbidden: ..." -> one line per distinct reason
        reasons = sorted(
            {
                re.sub(r'pods "[^"]+"', "pods", e["message"])
                for e in events
                if e.get("reason") == "FailedCreate"
            }
        )
        raise AssertionError(f"{exc}; FailedCreate events: {reasons}") from None
    return server_pods(kube, namespace)


def assert_port_forward_targets(kube: Kube, namespace: str, config: dict[str, Any]) -> None:
    for forward in config["portForward"]:
        service = kube.get("service", forward["resourceName"], namespace=namespace)
        assert forward["port"] in [p["port"] for p in service["spec"]["ports"]]


def test_dev_profile_admitted_under_restricted(
    kube: Kube, restricted_namespace: str, tmp_path: Path
) -> None:
    ns = restricted_namespace
    config = install(kube, ns, "dev", tmp_path)
    deployment = kube.get("deployment", "fastship", namespace=ns)
    assert deployment["spec"]["replicas"] == 1
    # The pod (writable root for file sync) passes Pod Security "restricted" admission.
    pods = wait_for_server_pods(kube, ns, 1)
    (server,) = [c for c in pods[0]["spec"]["containers"] if c["name"] == "server"]
    assert server["securityContext"]["readOnlyRootFilesystem"] is False
    hpas = kube.get("horizontalpodautoscalers", namespace=ns)["items"]
    assert hpas == []
    assert_port_forward_targets(kube, ns, config)


def test_prod_profile_hpa_holds_two_replicas(
    kube: Kube, restricted_namespace: str, tmp_path: Path
) -> None:
    ns = restricted_namespace
    config = install(kube, ns, "prod", tmp_path)
    hpa = kube.get("horizontalpodautoscaler", "fastship", namespace=ns)
    assert hpa["spec"]["minReplicas"] == 2
    # The Deployment is created without a count (1 by default); the HPA raises it to its
    # minimum, and the ReplicaSet makes the pods.
    wait_until(
        lambda: kube.get("deployment", "fastship", namespace=ns)["spec"].get("replicas") == 2,
        timeout=120,
        what="the HPA to scale the Deployment to 2",
    )
    wait_for_server_pods(kube, ns, 2)
    assert_port_forward_targets(kube, ns, config)
