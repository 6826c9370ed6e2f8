"""The operator in the image, logged in as in a pod: its ServiceAccount token, CA and
namespace mounted where the kubelet mounts them, the API server's address in
KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT, the chart's read-only root
filesystem. Its Role is exactly the chart's.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.image.conftest import Image
from tests.image.engine import Engine, http_get, running
from tests.image.test_runtime import READ_ONLY
from tests.operator.conftest import get, wait_applied
from tests.operator.harness import OPERATOR_SA, bind_operator_role, install_crds
from tests.operator.test_appconfig_cluster import appconfig, restricted_deployment
from tests.support.kube import Kube
from tests.support.waiting import free_port

pytestmark = [pytest.mark.image, pytest.mark.slow]

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def service_account_volume(kube: Kube, namespace: str, folder: Path) -> tuple[str, str]:
    """What the kubelet mounts for the operator's ServiceAccount; returns the API server's
    host and port, as the kubelet passes them in the environment."""
    token = kube.kubectl(
        "create", "token", OPERATOR_SA, "-n", namespace, "--duration=1h"
    ).stdout.strip()
    raw = json.loads(kube.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    cluster = raw["clusters"][0]["cluster"]
    if cluster.get("certificate-authority-data"):
        ca = base64.b64decode(cluster["certificate-authority-data"])
    else:
        ca = Path(cluster["certificate-authority"]).read_bytes()
    folder.mkdir()
    (folder / "token").write_text(token)
    (folder / "ca.crt").write_bytes(ca)
    (folder / "namespace").write_text(namespace)
    # Readable by the image's user, as the kubelet makes them (0644).
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)
    server = urlsplit(cluster["server"])
    assert server.hostname
    assert server.port
    return server.hostname, str(server.port)


def test_operator_logs_in_with_its_service_account(
    engine: Engine, image: Image, kube: Kube, restricted_namespace: str, tmp_path: Path
) -> None:
    ns = restricted_namespace
    install_crds(kube)
    bind_operator_role(kube, ns)
    host, port = service_account_volume(kube, ns, tmp_path / "serviceaccount")
    kube.apply(restricted_deployment(), namespace=ns)
    kube.apply(appconfig({"log_level": "DEBUG"}), namespace=ns)
    health, metrics = free_port(), free_port()
    with running(
        engine,
        image.tag,
        "python", "-m", "fastship_operator", "--liveness", f"http://127.0.0.1:{health}/healthz",
        "--metrics", f"127.0.0.1:{metrics}",
        env={"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port},
        options=[*READ_ONLY, "-v", f"{tmp_path / 'serviceaccount'}:{SERVICE_ACCOUNT_DIR}:ro"],
    ) as container:  # fmt: skip
        try:
            applied = wait_applied(
                kube, ns, "the operator in the image to apply the AppConfig", timeout=90
            )
            configmap = get(kube, "configmap", "app-config", ns)
            assert configmap is not None
            assert configmap["data"] == {"FASTSHIP_LOG_LEVEL": "DEBUG"}
            dep = get(kube, "deployment", "app", ns)
            assert dep is not None
            template = dep["spec"]["template"]["metadata"]["annotations"]
            assert template["fastship.dev/config-hash"] == applied["status"]["configHash"]
            status, _ = http_get(health, "/healthz")
            assert status == 200
            # Ready: logged in with the pod's token, and the API server answers its lists.
            status, _ = http_get(metrics, "/readyz")
            assert status == 200
            status, text = http_get(metrics, "/metrics")
            assert status == 200
            assert b"fastship_operator_config_rollouts_total 1.0" in text
        finally:
            logs = container.logs()
        container.signal("TERM")
        assert container.wait(timeout=60) == 0, logs[-4000:]
    assert f"watching namespace {ns}" in logs
    assert "forbidden" not in logs.lower(), logs[-4000:]
