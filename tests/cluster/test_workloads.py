"""Deployments and Jobs run through the real controllers and scheduler onto kwok nodes."""

from __future__ import annotations

from tests.cluster.manifests import KWOK_FAIL_LABEL, condition, deployment, job
from tests.support.kube import Kube, wait_until


def test_deployment_gets_replicaset_and_running_pods_on_nodes(kube: Kube, namespace: str) -> None:
    kube.apply(deployment("web", replicas=3), namespace=namespace)
    kube.kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=120s")

    deploy = kube.get("deployment", "web", namespace=namespace)
    assert deploy["status"]["availableReplicas"] == 3

    replicasets = kube.get("replicasets", namespace=namespace, selector="app=web")["items"]
    assert len(replicasets) == 1
    rs = replicasets[0]
    assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    assert rs["metadata"]["ownerReferences"][0]["uid"] == deploy["metadata"]["uid"]

    nodes = {n["metadata"]["name"]: n for n in kube.get("nodes")["items"]}
    pods = kube.get("pods", namespace=namespace, selector="app=web")["items"]
    assert len(pods) == 3
    for p in pods:
        assert p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
        assert p["status"]["phase"] == "Running"
        assert (condition(p, "Ready") or {}).get("status") == "True"
        node = nodes[p["spec"]["nodeName"]]
        if kube.local:
            assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"


def test_job_pod_succeeds_and_job_completes(kube: Kube, namespace: str) -> None:
    kube.apply(job("ok", command=["true"]), namespace=namespace)
    kube.kubectl("wait", "--for=condition=Complete", "job/ok", "-n", namespace, "--timeout=120s")

    status = kube.get("job", "ok", namespace=namespace)["status"]
    assert status.get("succeeded") == 1
    assert not status.get("failed")
    pods = kube.get("pods", namespace=namespace, selector="job-name=ok")["items"]
    assert [p["status"]["phase"] for p in pods] == ["Succeeded"]


def test_job_set_to_fail_fails(kube: Kube, namespace: str) -> None:
    # On kwok the stage label fails the container; on a real cluster the command does.
    failing = job("broken", command=["sh", "-c", "exit 1"], labels={KWOK_FAIL_LABEL: "true"})
    kube.apply(failing, namespace=namespace)
    kube.kubectl("wait", "--for=condition=Failed", "job/broken", "-n", namespace, "--timeout=120s")

    obj = kube.get("job", "broken", namespace=namespace)
    assert obj["status"].get("failed") == 1
    assert not obj["status"].get("succeeded")
    failed = condition(obj, "Failed")
    assert failed is not None
    assert failed["reason"] == "BackoffLimitExceeded"
    assert condition(obj, "Complete") is None

    pods = wait_until(
        lambda: [
            p
            for p in kube.get("pods", namespace=namespace, selector="job-name=broken")["items"]
            if p["status"].get("phase") == "Failed"
        ],
        timeout=30,
        what="the Job's pod to be Failed",
    )
    terminated = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 1
