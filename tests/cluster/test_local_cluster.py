"""The local cluster that the chart, operator and dev-loop tests run on works as they
assume: the restricted namespaces refuse what Pod Security refuses, kwok's nodes run a
Deployment's pods, and the stages of k8s/local/kwok-stages.yaml finish Job pods, with
success or, for a labelled pod, with exit code 1 (the operator's Migration tests use
both)."""

from __future__ import annotations

from tests.support.conditions import condition
from tests.support.kube import Kube
from tests.support.manifests import KWOK_FAIL_LABEL, deployment, job, pod
from tests.support.waiting import wait_until


def test_restricted_namespace_refuses_a_privileged_pod(
    kube: Kube, restricted_namespace: str
) -> None:
    # The chart and the operator are installed into such namespaces: a pass there means
    # something only while the namespace enforces the profile.
    privileged = pod("priv", security_context={"privileged": True})
    proc = kube.apply(privileged, namespace=restricted_namespace, check=False)
    assert proc.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in proc.stderr


def test_kwok_nodes_run_a_deployments_pods(kube: Kube, namespace: str) -> None:
    kube.apply(deployment("web", replicas=3), namespace=namespace)
    kube.kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=120s")
    nodes = {n["metadata"]["name"]: n for n in kube.get("nodes")["items"]}
    pods = kube.get("pods", namespace=namespace, selector="app=web")["items"]
    assert len(pods) == 3
    for p in pods:
        assert p["status"]["phase"] == "Running"
        assert condition(p, "Ready")["status"] == "True"
        if kube.local:
            assert (
                nodes[p["spec"]["nodeName"]]["metadata"]["annotations"]["kwok.x-k8s.io/node"]
                == "fake"
            )


def test_job_pods_succeed_or_fail_as_labelled(kube: Kube, namespace: str) -> None:
    # On kwok the stage label fails the container; on a real cluster the command does.
    kube.apply(
        [
            job("ok", command=["true"]),
            job("broken", command=["sh", "-c", "exit 1"], labels={KWOK_FAIL_LABEL: "true"}),
        ],
        namespace=namespace,
    )
    kube.kubectl("wait", "--for=condition=Complete", "job/ok", "-n", namespace, "--timeout=120s")
    kube.kubectl("wait", "--for=condition=Failed", "job/broken", "-n", namespace, "--timeout=120s")
    ok = kube.get("pods", namespace=namespace, selector="job-name=ok")["items"]
    assert [p["status"]["phase"] for p in ok] == ["Succeeded"]
    failed = wait_until(
        lambda: [
            p
            for p in kube.get("pods", namespace=namespace, selector="job-name=broken")["items"]
            if p["status"].get("phase") == "Failed"
        ],
        timeout=30,
        what="the failing Job's pod to be Failed",
    )
    assert failed[0]["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1
