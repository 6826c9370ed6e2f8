"""NetworkPolicy enforced on the real node: the enforcer itself, then every flow of the chart.

A flow is probed from inside a pod with a TCP connect (or a DNS query over UDP) that waits
at most a few seconds. Allowed means the connection opened (or DNS answered); blocked
means it timed out or was reset, which is what an enforcer that drops the first packet
gives. Any other outcome (refused, no route, a DNS name that does not resolve) fails the
test, so that a broken probe is never mistaken for a policy.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.realnode.conftest import APP_IMAGE, CHART, FULLNAME, Node, Release
from tests.support.waiting import wait_until

PROBE = r"""
import socket, struct, sys
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    if kind == "tcp":
        s = socket.create_connection((host, port), timeout=4)
        s.close()
    else:  # a DNS query for kubernetes.default.svc.cluster.local, type A
        labels = b"kubernetes.default.svc.cluster.local".split(b".")
        name = b"".join(bytes([len(p)]) + p for p in labels) + b"\0"
        header = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
        query = header + name + struct.pack(">HH", 1, 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(4)
        s.sendto(query, (host, port))
        answer = s.recv(512)
        assert answer[:2] == b"\x12\x34"
    print("open")
except (socket.timeout, TimeoutError):
    print("timeout")
except ConnectionResetError:
    print("reset")
except ConnectionRefusedError:
    print("refused")
except OSError as exc:
    print("error", exc)
"""
BLOCKED = {"timeout", "reset"}


def probe(node: Node, namespace: str, pod: str, kind: str, host: str, port: int) -> str:
    result = node.kube.kubectl(
        "-n", namespace, "exec", pod, "--", "python3", "-c", PROBE, kind, host, str(port),
        timeout=60,
    )  # fmt: skip
    return result.stdout.strip()


def assert_open(node: Node, ns: str, pod: str, kind: str, host: str, port: int) -> None:
    outcome = probe(node, ns, pod, kind, host, port)
    assert outcome == "open", f"{pod} -> {host}:{port} ({kind}) should be allowed: {outcome}"


def assert_blocked(node: Node, ns: str, pod: str, kind: str, host: str, port: int) -> None:
    outcome = probe(node, ns, pod, kind, host, port)
    assert outcome in BLOCKED, f"{pod} -> {host}:{port} ({kind}) should be blocked: {outcome}"


def standin(
    node: Node, namespace: str, name: str, labels: dict[str, str], ports: dict[str, int]
) -> dict[str, Any]:
    """A pod of the project's image that listens on the given named ports."""
    servers = "; ".join(
        f"threading.Thread(target=socketserver.TCPServer(('', {p}), "
        "socketserver.BaseRequestHandler).serve_forever).start()"
        for p in ports.values()
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "main",
                    "image": APP_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": [
                        "python3",
                        "-c",
                        f"import socketserver, threading, time; {servers}; time.sleep(86400)",
                    ],
                    "ports": [{"name": k, "containerPort": v} for k, v in ports.items()],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    node.kube.apply(pod)
    node.kube.kubectl("-n", namespace, "wait", "--for=condition=Ready", f"pod/{name}",
                      "--timeout=90s", timeout=120)  # fmt: skip
    found: dict[str, Any] = json.loads(
        node.kube.kubectl("-n", namespace, "get", "pod", name, "-o", "json").stdout
    )
    return found


def pod_ip(pod: dict[str, Any]) -> str:
    return str(pod["status"]["podIP"])


@pytest.fixture
def scratch(node: Node) -> Iterator[str]:
    name = node.kube.create_namespace(f"np-{secrets.token_hex(3)}")
    try:
        yield name
    finally:
        node.kube.delete_namespace(name)


def test_networkpolicy_enforcer_blocks_and_unblocks(node: Node, images: Any, scratch: str) -> None:
    server = standin(node, scratch, "server", {"role": "server"}, {"http": 8000})
    standin(node, scratch, "client", {"role": "client"}, {"http": 8000})
    assert_open(node, scratch, "client", "tcp", pod_ip(server), 8000)
    node.kube.apply(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "deny", "namespace": scratch},
            "spec": {
                "podSelector": {"matchLabels": {"role": "server"}},
                "policyTypes": ["Ingress"],
            },
        }
    )
    wait_until(
        lambda: probe(node, scratch, "client", "tcp", pod_ip(server), 8000) in BLOCKED,
        timeout=30, interval=1,
        what="the default-deny policy to be enforced (is kube-network-policies running?)",
    )  # fmt: skip
    node.kube.kubectl("-n", scratch, "delete", "networkpolicy", "deny")
    wait_until(
        lambda: probe(node, scratch, "client", "tcp", pod_ip(server), 8000) == "open",
        timeout=30, interval=1, what="the connection to go through again",
    )  # fmt: skip


def test_networkpolicy_every_flow_of_the_default_install(release: Release, scratch: str) -> None:
    node, ns = release.node, release.namespace

    def one(component: str) -> dict[str, Any]:
        pods = release.get("pods", "-l", f"app.kubernetes.io/component={component}")["items"]
        running = [p for p in pods if p["status"]["phase"] == "Running"]
        assert running, f"no running {component} pod"
        return dict(running[0])

    app, pg, op = one("server"), one("postgresql"), one("operator")
    app_name, pg_name, op_name = (p["metadata"]["name"] for p in (app, pg, op))
    pg_service = release.get("service", f"{FULLNAME}-postgresql")["spec"]["clusterIP"]
    dns = "10.0.0.10"
    stranger = standin(node, ns, "stranger", {"role": "stranger"}, {"http": 8000})
    outsider = standin(node, scratch, "outsider", {"role": "outsider"}, {"http": 8000})

    # Allowed: the service to Postgres (pod and Service) and DNS; the operator to DNS.
    # (The migration Job reached Postgres, the helm test pod the service and the operator
    # the API: test_chart.py shows each working under these same policies.)
    assert_open(node, ns, app_name, "tcp", pod_ip(pg), 5432)
    assert_open(node, ns, app_name, "tcp", pg_service, 5432)
    assert_open(node, ns, app_name, "udp", dns, 53)
    assert_open(node, ns, op_name, "udp", dns, 53)
    # ... and the stand-ins themselves reach the service's port, which admits anyone.
    assert_open(node, ns, "stranger", "tcp", pod_ip(app), 8000)

    # Blocked: Postgres from a pod without the release's labels, from another namespace
    # and from the operator; the service to any other pod; Postgres to anything.
    assert_blocked(node, ns, "stranger", "tcp", pod_ip(pg), 5432)
    assert_blocked(node, ns, "stranger", "tcp", pg_service, 5432)
    assert_blocked(node, scratch, "outsider", "tcp", pod_ip(pg), 5432)
    assert_blocked(node, ns, op_name, "tcp", pod_ip(pg), 5432)
    assert_blocked(node, ns, app_name, "tcp", pod_ip(stranger), 8000)
    assert_blocked(node, ns, app_name, "tcp", pod_ip(outsider), 8000)
    assert_blocked(node, ns, app_name, "tcp", pod_ip(op), 8080)
    assert_blocked(node, ns, pg_name, "tcp", pod_ip(app), 8000)
    assert_blocked(node, ns, pg_name, "udp", dns, 53)
    node.kube.kubectl("-n", ns, "delete", "pod", "stranger", "--wait=false")


# --- the options, on stand-ins that carry the release's labels ---------------------------------


def render_policies(node: Node, release: str, namespace: str, *values: str) -> list[dict[str, Any]]:
    """The chart's NetworkPolicies for these values (helm template, nothing else applied)."""
    rendered = node.kube.helm("template", release, str(CHART), "-n", namespace, *values).stdout
    return [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "NetworkPolicy"]


def labels(release: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "fastship",
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/component": component,
    }


def test_networkpolicy_options(node: Node, images: Any, scratch: str) -> None:
    kube = node.kube
    name = "opts"
    api = standin(node, scratch, "api-standin", {"role": "api"}, {"https": 9443})
    # A stand-in for an API server on a port that is neither 443 nor 6443: a Service on
    # 443 that forwards to 9443. Policies match the port after translation.
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "api", "namespace": scratch},
            "spec": {"selector": {"role": "api"}, "ports": [{"port": 443, "targetPort": 9443}]},
        }
    )
    api_ip = json.loads(kube.kubectl("-n", scratch, "get", "svc", "api", "-o", "json").stdout)[
        "spec"
    ]["clusterIP"]
    extra = standin(node, scratch, "extra", {"role": "extra"}, {"http": 8000, "other": 8001})
    friend = standin(node, scratch, "friend", {"role": "friend"}, {"http": 8000})
    standin(node, scratch, "foe", {"role": "foe"}, {"http": 8000})
    app = standin(node, scratch, "app", labels(name, "server"), {"http": 8000})
    standin(node, scratch, "operator", labels(name, "operator"), {"health": 8080})

    def apply(*values: str, witness: tuple[str, str, int, str]) -> None:
        """The chart's policies for these values in place of the last ones (updated in
        place, the stale ones deleted: no moment without policies), then a wait until
        ``witness`` (pod, host, port, "open" or "blocked"), a flow whose verdict the
        change flips, shows the new policies in force."""
        policies = render_policies(node, name, scratch, *values)
        for policy in policies:
            kube.apply(policy, namespace=scratch)
        wanted = {policy["metadata"]["name"] for policy in policies}
        current = kube.get("networkpolicies", namespace=scratch)["items"]
        for stale in {p["metadata"]["name"] for p in current} - wanted:
            kube.kubectl("-n", scratch, "delete", "networkpolicy", stale)
        pod, host, port, verdict = witness

        def in_force() -> bool:
            outcome = probe(node, scratch, pod, "tcp", host, port)
            return outcome == "open" if verdict == "open" else outcome in BLOCKED

        wait_until(in_force, timeout=30, interval=0.5, what=f"{pod} -> {host}:{port} {verdict}")

    def peer(role: str) -> dict[str, Any]:
        return {"podSelector": {"matchLabels": {"role": role}}}

    extra_egress = [{"to": [peer("extra")], "ports": [{"port": 8000, "protocol": "TCP"}]}]
    apply(
        "--set-json", f"networkPolicy.ingressFrom={json.dumps([peer('friend')])}",
        "--set-json", f"networkPolicy.extraEgress={json.dumps(extra_egress)}",
        witness=("foe", pod_ip(app), 8000, "blocked"),
    )  # fmt: skip
    # ingressFrom: only the named clients reach the service.
    assert_open(node, scratch, "friend", "tcp", pod_ip(app), 8000)
    assert_blocked(node, scratch, "foe", "tcp", pod_ip(app), 8000)
    # extraEgress opens exactly what it names: that pod, that port.
    assert_open(node, scratch, "app", "tcp", pod_ip(extra), 8000)
    assert_blocked(node, scratch, "app", "tcp", pod_ip(extra), 8001)
    assert_blocked(node, scratch, "app", "tcp", pod_ip(friend), 8000)
    # The operator's API ports: by default 443 and 6443, so the stand-in API is blocked ...
    assert_blocked(node, scratch, "operator", "tcp", api_ip, 443)
    # ... until its real port is named.
    apply(
        "--set-json", "networkPolicy.kubeApiPorts=[9443]",
        witness=("operator", api_ip, 443, "open"),
    )  # fmt: skip
    assert_open(node, scratch, "operator", "tcp", api_ip, 443)
    assert_open(node, scratch, "operator", "tcp", pod_ip(api), 9443)

    # External Postgres: egress to exactly the peers named.
    apply(
        "--set", "postgresql.mode=external",
        "--set", "postgresql.external.existingSecret=db",
        "--set", "postgresql.external.port=8000",
        "--set-json", f"postgresql.external.networkPolicyPeers={json.dumps([peer('extra')])}",
        witness=("app", pod_ip(extra), 8000, "open"),
    )  # fmt: skip
    assert_open(node, scratch, "app", "tcp", pod_ip(extra), 8000)
    assert_blocked(node, scratch, "app", "tcp", pod_ip(friend), 8000)
