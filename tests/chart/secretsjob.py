"""Run the chart's `<fullname>-secrets` Job the way its pod would, against the test cluster.

kwok runs no container, so the tests run files/generate-secrets.py themselves: with the
Job's own environment, a token of the Job's ServiceAccount (so the chart's Role is what
allows or refuses each request) and the API server's address and CA, as a pod sees them
under /var/run/secrets/kubernetes.io/serviceaccount.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from tests.chart.conftest import CHART
from tests.support.kube import Kube

SCRIPT = CHART / "files" / "generate-secrets.py"


def job_env(job: dict[str, Any]) -> dict[str, str]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def run_as_job(kube: Kube, namespace: str, job: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Run the script with ``job``'s environment and its ServiceAccount's token."""
    sa = job["spec"]["template"]["spec"]["serviceAccountName"]
    token = kube.kubectl("create", "token", sa, "-n", namespace, "--duration", "10m").stdout
    config = yaml.safe_load(kube.kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    server = urlsplit(cluster["server"])
    with tempfile.TemporaryDirectory() as tmp:
        sa_dir = Path(tmp)
        (sa_dir / "token").write_text(token.strip())
        (sa_dir / "namespace").write_text(namespace)
        if "certificate-authority-data" in cluster:
            ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
        else:
            ca = (kube.kubeconfig.parent / cluster["certificate-authority"]).read_text()
        (sa_dir / "ca.crt").write_text(ca)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "KUBERNETES_SERVICE_HOST": server.hostname or "",
            "KUBERNETES_SERVICE_PORT": str(server.port or 443),
            "FASTSHIP_SERVICEACCOUNT_DIR": str(sa_dir),
            **job_env(job),
        }
        return subprocess.run(
            [sys.executable, str(SCRIPT)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def secrets_data(kube: Kube, namespace: str, names: list[str]) -> dict[str, dict[str, str]]:
    """Name -> (key -> plain value) of the named Secrets."""
    out: dict[str, dict[str, str]] = {}
    for name in names:
        data = kube.get("secret", name, namespace=namespace)["data"]
        out[name] = {k: base64.b64decode(v).decode() for k, v in data.items()}
    return out
