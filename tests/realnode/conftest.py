"""Fixtures of the real-node tests: a cluster whose one node runs real pods.

``tools/realnode.sh`` starts the local control plane and a real kubelet node (containerd,
runc, the bridge CNI, kube-proxy, CoreDNS, the kube-network-policies enforcer) inside a
network namespace of its own, with no route out of it. The images are built here with
podman and copied into the node's containerd: the project's image from the working
tree, and Postgres from Debian's packages (no registry can be reached). Every command
that talks to the cluster (kubectl, helm, the load generator) runs inside that network
namespace.

The node is started once per session and removed at the end, also when a test fails or
the run is interrupted (SIGINT, SIGTERM); a node left by a killed session is removed by
the next one. These tests need root and are marked ``realnode``: deselect them with
``-m "not realnode"`` on a machine that cannot run a node.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.image.engine import BASE_IMAGE_SCRIPT, REPO, Engine
from tests.support.conditions import condition
from tests.support.kube import RESTRICTED_LABELS, Kube, tools_bin
from tests.web.conftest import web_dist  # noqa: F401 - the Dockerfile copies web/dist

REALNODE = REPO / "tools" / "realnode.sh"
POSTGRES_CONTEXT = REPO / "tools" / "realnode" / "postgres"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
APP_IMAGE = "localhost/fastship:realnode"
POSTGRES_IMAGE = "localhost/fastship-postgres:15"
CHART = REPO / "charts" / "fastship"
RELEASE = "shop"
FULLNAME = "shop-fastship"
NODE_TOOLS = ("kubelet", "kube-proxy", "containerd", "containerd-shim-runc-v2", "ctr")

# Numbers shown at the end of the run.
NUMBERS: dict[str, str] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.realnode)
            item.add_marker(pytest.mark.slow)


@dataclass
class Node:
    """The real-node cluster: where it lives and how to run things inside its network."""

    workdir: Path
    netns: str
    kube: Kube
    start_seconds: float

    def nsenter(self) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}"]

    def run(
        self, *cmd: str, timeout: float = 120, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the node's network namespace."""
        proc = subprocess.run(
            [*self.nsenter(), *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.kube.env,
            input=input,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def popen(self, *cmd: str, **kwargs: object) -> subprocess.Popen[str]:
        """Start a command inside the node's network namespace (a load generator)."""
        return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
            [*self.nsenter(), *cmd], env=self.kube.env, text=True, **kwargs
        )

    def load(self, *images: str) -> None:
        result = script(self.workdir, "load", *images)
        if result.returncode != 0:
            raise AssertionError(f"loading {images} into the node failed:\n{result.stderr}")


def script(workdir: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, FASTSHIP_NODE_WORKDIR=str(workdir), TOOLS_BIN=str(tools_bin()))
    env.pop("KUBECONFIG", None)
    return subprocess.run(
        ["bash", str(REALNODE), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _reap_stale(root: Path) -> None:
    """Remove nodes left by sessions that were killed (their pid is gone)."""
    if not root.is_dir():
        return
    for workdir in root.iterdir():
        try:
            pid = int((workdir / "session.pid").read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(pid, 0)
            continue
        except ProcessLookupError:
            pass
        script(workdir, "down")
        shutil.rmtree(workdir, ignore_errors=True)


def _exit_on_signals() -> None:
    """SIGTERM and SIGINT end the session through SystemExit, so that teardown runs."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:

        def handler(signum: int, frame: object) -> None:
            raise SystemExit(128 + signum)

        signal.signal(signal.SIGTERM, handler)


def _node(workdir: Path, info_text: str, seconds: float) -> Node:
    info = dict(line.split(": ", 1) for line in info_text.splitlines() if ": " in line)
    kubeconfig = Path(info["kubeconfig"])
    netns = info["netns"]
    bin_dir = tools_bin()
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    kube = Kube(
        kubeconfig=kubeconfig,
        bin_dir=bin_dir,
        env=env,
        local=True,
        prefix=("nsenter", f"--net=/run/netns/{netns}"),
    )
    version = json.loads(kube.kubectl("version", "-o", "json").stdout)["serverVersion"]
    kube.version = f"{version['major']}.{version['minor']}"
    kube.git_version = version["gitVersion"]
    return Node(workdir=workdir, netns=netns, kube=kube, start_seconds=seconds)


@pytest.fixture(scope="session")
def node() -> Iterator[Node]:
    if os.geteuid() != 0:
        pytest.fail(
            "the real-node tests need root (network namespaces, mounts, cgroups); "
            'run them as root or deselect them with -m "not realnode"',
            pytrace=False,
        )
    missing = [t for t in NODE_TOOLS if not os.access(tools_bin() / t, os.X_OK)]
    if missing:
        pytest.fail(f"missing in {tools_bin()}: {', '.join(missing)}; run `make tools`")
    existing = os.environ.get("FASTSHIP_NODE_WORKDIR")
    if existing:
        # A node started by hand (`make node-up`) is used as it is and left running.
        workdir = Path(existing)
        result = script(workdir, "status")
        if result.returncode != 0:
            pytest.fail(f"FASTSHIP_NODE_WORKDIR={existing}: no node is up there", pytrace=False)
        yield _node(workdir, result.stdout, 0.0)
        return
    root = Path(tempfile.gettempdir()) / "fastship-realnode"
    _reap_stale(root)
    workdir = root / f"s{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "session.pid").write_text(str(os.getpid()))

    def down() -> None:
        result = script(workdir, "down")
        if result.returncode != 0:
            sys.stderr.write(f"\n[realnode] down failed:\n{result.stderr}\n")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    _exit_on_signals()
    atexit.register(down)
    try:
        started = time.monotonic()
        result = script(workdir, "up")
        seconds = time.monotonic() - started
        if result.returncode != 0:
            pytest.fail(
                f"starting the real node failed (logs in {workdir}/logs):\n{result.stderr[-6000:]}",
                pytrace=False,
            )
        NUMBERS["node start (control plane, node, CoreDNS)"] = f"{seconds:.1f} s"
        yield _node(workdir, result.stdout, seconds)
    finally:
        started = time.monotonic()
        down()
        atexit.unregister(down)
        NUMBERS["node stop"] = f"{time.monotonic() - started:.1f} s"


@pytest.fixture(scope="session")
def images(node: Node, request: pytest.FixtureRequest) -> dict[str, str]:
    """The project's image and the Postgres image, built here and loaded into the node."""
    request.getfixturevalue("web_dist")  # the Dockerfile copies web/dist
    engine = Engine()
    base = subprocess.run(
        [str(BASE_IMAGE_SCRIPT)], capture_output=True, text=True, timeout=1800, check=False
    )
    if base.returncode != 0:
        pytest.fail(f"making the base image failed:\n{base.stderr[-4000:]}")
    base_image = base.stdout.strip().splitlines()[-1]
    ca = HOST_CA_BUNDLE if HOST_CA_BUNDLE.exists() else None
    started = time.monotonic()
    engine.build(REPO, tag=APP_IMAGE, base_image=base_image, ca_bundle=ca)
    engine.build(POSTGRES_CONTEXT, tag=POSTGRES_IMAGE, base_image=base_image, ca_bundle=None)
    NUMBERS["image builds (app, Postgres)"] = f"{time.monotonic() - started:.1f} s"
    started = time.monotonic()
    node.load(APP_IMAGE, POSTGRES_IMAGE)
    NUMBERS["image loads into the node"] = f"{time.monotonic() - started:.1f} s"
    return {"app": APP_IMAGE, "postgres": POSTGRES_IMAGE, "base": base_image}


@dataclass
class Release:
    node: Node
    namespace: str
    values: list[str]
    url: str

    def kubectl(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        return self.node.kube.kubectl(
            "-n", self.namespace, *args, check=check, timeout=timeout
        ).stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def helm(self, *args: str, check: bool = True, timeout: float = 600) -> str:
        return self.node.kube.helm("-n", self.namespace, *args, check=check, timeout=timeout).stdout

    def traffic(self, *args: str, timeout: float = 120) -> Any:
        result = self.node.run(
            sys.executable, "-m", "tests.realnode.traffic", *args, timeout=timeout
        )
        return json.loads(result.stdout.strip().splitlines()[-1])

    def app_pods(self) -> list[dict[str, Any]]:
        pods = self.get("pods", "-l", "app.kubernetes.io/component=server")["items"]
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def image_values(images: dict[str, str], tag: str = "realnode") -> list[str]:
    repository = images["app"].rsplit(":", 1)[0]
    pg_repository, pg_tag = images["postgres"].rsplit(":", 1)
    return [
        "--set-string", f"image.repository={repository}",
        "--set-string", f"image.tag={tag}",
        "--set-string", f"postgresql.bundled.image.repository={pg_repository}",
        "--set-string", f"postgresql.bundled.image.tag={pg_tag}",
    ]  # fmt: skip


def ready(pod: dict[str, Any]) -> bool:
    return condition(pod, "Ready").get("status") == "True"


def local_volume(node: Node, namespace: str) -> None:
    """A hostPath PersistentVolume for the bundled Postgres: the node has no provisioner."""
    path = node.workdir / "volumes" / namespace
    path.mkdir(parents=True)
    os.chown(path, 999, 999)
    path.chmod(0o700)
    node.kube.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"pv-{namespace}"},
            "spec": {
                "capacity": {"storage": "8Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete",
                "claimRef": {"namespace": namespace, "name": f"{FULLNAME}-postgresql-data"},
                "hostPath": {"path": str(path), "type": "Directory"},
            },
        }
    )


@pytest.fixture(scope="session")
def release(node: Node, images: dict[str, str]) -> Iterator[Release]:
    kube = node.kube
    namespace = kube.create_namespace(f"shop-{secrets.token_hex(3)}", labels=RESTRICTED_LABELS)
    local_volume(node, namespace)
    values = image_values(images)
    started = time.monotonic()
    kube.helm(
        "install", RELEASE, str(CHART), "-n", namespace, *values, "--wait", "--timeout", "6m",
        timeout=420,
    )  # fmt: skip
    NUMBERS["helm install --wait (default values) to Ready"] = f"{time.monotonic() - started:.1f} s"
    ip = json.loads(kube.kubectl("-n", namespace, "get", "service", FULLNAME, "-o", "json").stdout)[
        "spec"
    ]["clusterIP"]
    try:
        yield Release(node=node, namespace=namespace, values=values, url=f"http://{ip}:80")
    finally:
        kube.helm("uninstall", RELEASE, "-n", namespace, "--wait", check=False)
        kube.delete_namespace(namespace)
        kube.kubectl("delete", "pv", f"pv-{namespace}", "--ignore-not-found", check=False)
        shutil.rmtree(node.workdir / "volumes" / namespace, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if NUMBERS:
        terminalreporter.section("real node")
        for key, value in NUMBERS.items():
            terminalreporter.write_line(f"{key}: {value}")
