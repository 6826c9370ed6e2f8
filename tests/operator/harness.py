"""Running the fastship operator against a cluster with exactly the chart's RBAC.

Used by the operator tests (tests/operator/conftest.py) and the benchmark
(bench/operator.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.support.kube import REPO_ROOT, Kube

CRD_DIR = REPO_ROOT / "charts" / "fastship" / "crds"
RULES_FILE = REPO_ROOT / "charts" / "fastship" / "files" / "operator-rbac-rules.yaml"
OPERATOR_SA = "fastship-operator"


def operator_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load(RULES_FILE.read_text())
    assert isinstance(rules, list), f"{RULES_FILE} must be a YAML list of RBAC rules"
    return rules


def install_crds(kube: Kube) -> None:
    """The two CRDs from the chart's crds/ folder, installed and established."""
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    kube.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/migrations.fastship.dev",
        "crd/appconfigs.fastship.dev",
        "--timeout=60s",
    )


def service_account_kubeconfig(kube: Kube, namespace: str, path: Path) -> Path:
    """A ServiceAccount bound to the operator's Role, and a kubeconfig with its token."""
    bind_operator_role(kube, namespace)
    return token_kubeconfig(kube, namespace, OPERATOR_SA, path)


def bind_operator_role(kube: Kube, namespace: str) -> None:
    """ServiceAccount, Role (the rules file, verbatim) and RoleBinding of the operator."""
    kube.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": OPERATOR_SA},
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": OPERATOR_SA},
                "rules": operator_rules(),
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": OPERATOR_SA},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": OPERATOR_SA,
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": OPERATOR_SA, "namespace": namespace}
                ],
            },
        ],
        namespace=namespace,
    )


def token_kubeconfig(kube: Kube, namespace: str, service_account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as ``service_account`` with a fresh token."""
    token = kube.kubectl(
        "create", "token", service_account, "-n", namespace, "--duration=2h"
    ).stdout.strip()
    admin = json.loads(kube.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    cluster = admin["clusters"][0]["cluster"]
    cluster_entry: dict[str, Any] = {"server": cluster["server"]}
    for key in ("certificate-authority-data", "certificate-authority", "insecure-skip-tls-verify"):
        if key in cluster:
            cluster_entry[key] = cluster[key]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster_entry}],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [
            {
                "name": "operator",
                "context": {"cluster": "test", "user": service_account, "namespace": namespace},
            }
        ],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path
