"""pytest plugin: a Kubernetes cluster for tests.

By default a local kwok cluster is started once per test session (real kube-apiserver,
kube-controller-manager, kube-scheduler, etcd and metrics-server built by `make tools`,
three fake nodes managed by kwok; no container ever runs) and deleted at the end of the
session, also when tests fail or the run is interrupted.

With ``FASTSHIP_KUBECONFIG`` set, the tests use that cluster instead (kind, or a real one)
and nothing is started or stopped.

Fixtures:
    kube                  session: a :class:`Kube` handle (kubeconfig, env, kubectl, helm)
    namespace             function: a fresh namespace, deleted after the test
    restricted_namespace  function: the same, labelled for Pod Security "restricted"

Tests that use these fixtures get the ``cluster`` marker automatically.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.support.waiting import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO_ROOT / "tools" / "cluster.sh"
KUBECONFIG_ENV = "FASTSHIP_KUBECONFIG"
CLUSTER_TOOLS = (
    "kwokctl",
    "kwok",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "metrics-server",
)
CLIENT_TOOLS = ("kubectl", "helm")
RESTRICTED_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}

T = TypeVar("T")


def tools_bin() -> Path:
    """Directory of the tool binaries that `make tools` links."""
    return Path(os.environ.get("TOOLS_BIN", REPO_ROOT / ".tools" / "bin"))


class KubeCommandError(subprocess.CalledProcessError):
    """A kubectl/helm command failed; the message carries its stdout and stderr."""

    def __str__(self) -> str:
        cmd = " ".join(str(c) for c in self.cmd) if isinstance(self.cmd, list) else str(self.cmd)
        return (
            f"`{cmd}` exited {self.returncode}\n"
            f"--- stdout ---\n{self.stdout or ''}\n--- stderr ---\n{self.stderr or ''}"
        )


@dataclass
class Kube:
    """Handle to the test cluster and the client tools that talk to it."""

    kubeconfig: Path
    bin_dir: Path
    env: dict[str, str]
    version: str = ""
    """Server ``major.minor`` (e.g. ``"1.36"``), usable as ``helm template --kube-version``."""
    git_version: str = ""
    """Full server version as reported by /version (e.g. ``"v1.36.3"``)."""
    local: bool = False
    """True for the kwok cluster this plugin started, False for ``FASTSHIP_KUBECONFIG``."""
    prefix: tuple[str, ...] = ()
    """Command words put before every tool, e.g. ``nsenter --net=...`` for a cluster that
    is reachable only inside a network namespace (the real node's)."""
    _tools: dict[str, str] = field(default_factory=dict, repr=False)
    _kwok: bool | None = field(default=None, repr=False)

    # --- commands ---------------------------------------------------------------

    def run(
        self,
        tool: str,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 300.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``tool`` (kubectl, helm, ...) with this cluster's env; text output captured."""
        exe = self._tools.get(tool) or str(self.bin_dir / tool)
        cmd = [*self.prefix, exe, *args]
        proc = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise KubeCommandError(proc.returncode, [tool, *args], proc.stdout, proc.stderr)
        return proc

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args, input=input, check=check, timeout=timeout)

    def helm(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 600.0
    ) -> subprocess.CompletedProcess[str]:
        return self.run("helm", *args, input=input, check=check, timeout=timeout)

    @property
    def kwok(self) -> bool:
        """True when every node is a kwok node (containers are simulated, not run)."""
        if self._kwok is None:
            nodes = self.get("nodes")["items"]
            self._kwok = bool(nodes) and all(
                n["metadata"].get("annotations", {}).get("kwok.x-k8s.io/node") == "fake"
                for n in nodes
            )
        return self._kwok

    # --- conveniences -----------------------------------------------------------

    def apply(
        self,
        manifest: str | Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *args: str,
        namespace: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl apply -f -`` of YAML text, one object or a list of objects."""
        text = manifest if isinstance(manifest, str) else to_yaml(manifest)
        ns = ["-n", namespace] if namespace else []
        return self.kubectl("apply", *ns, *args, "-f", "-", input=text, check=check)

    def get(
        self,
        kind: str,
        name: str | None = None,
        *,
        namespace: str | None = None,
        selector: str | None = None,
    ) -> Any:
        """``kubectl get -o json`` parsed; without ``name`` it returns the List object."""
        ns = ["-n", namespace] if namespace else []
        target = [kind, name] if name else [kind]
        sel = ["-l", selector] if selector else []
        return json.loads(self.kubectl("get", *ns, *target, *sel, "-o", "json").stdout)

    def create_namespace(
        self, name: str | None = None, *, labels: Mapping[str, str] | None = None
    ) -> str:
        """Create a namespace (random name unless given) and wait for its default ServiceAccount."""
        name = name or f"t-{secrets.token_hex(4)}"
        ns = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": dict(labels or {})},
        }
        self.kubectl("create", "-f", "-", input=to_yaml(ns))
        # Pods are refused until the ServiceAccount controller has made "default".
        wait_until(
            lambda: (
                self.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode
                == 0
            ),
            timeout=60,
            interval=0.2,
            what=f"ServiceAccount default in namespace {name}",
        )
        return name

    def delete_namespace(self, name: str) -> None:
        """Delete a namespace without waiting for it to go."""
        self.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def to_yaml(manifest: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> str:
    docs = [manifest] if isinstance(manifest, Mapping) else list(manifest)
    return yaml.safe_dump_all([dict(d) for d in docs], sort_keys=False)


# --- the local kwok cluster -------------------------------------------------------------


def _sanitize(text: str, limit: int) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:limit].strip("-")


class LocalCluster:
    """A kwok cluster run by tools/cluster.sh in a private working directory."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.name = f"fastship-test-{os.getpid()}-{secrets.token_hex(3)}"
        self.root = Path(tempfile.gettempdir()) / f"fastship-kwok-{os.getuid()}"
        self.workdir = self.root / self.name
        self.kubeconfig = self.workdir / "clusters" / self.name / "kubeconfig.yaml"
        self.started = False
        self.start_seconds = 0.0
        self.stop_seconds = 0.0
        self._stopped = False
        self._failed = False

    def _script(
        self, action: str, *, workdir: Path | None = None, name: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env.update(
            FASTSHIP_CLUSTER_NAME=name or self.name,
            FASTSHIP_KWOK_WORKDIR=str(workdir or self.workdir),
            TOOLS_BIN=str(self.bin_dir),
        )
        env.pop("KUBECONFIG", None)
        return subprocess.run(
            ["bash", str(CLUSTER_SCRIPT), action],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    def reap_stale(self) -> None:
        """Delete clusters left behind by test sessions that were killed (their pid is gone)."""
        if not self.root.is_dir():
            return
        for workdir in self.root.iterdir():
            owner = workdir / "owner.pid"
            try:
                pid = int(owner.read_text().strip())
            except (OSError, ValueError):
                continue
            if _pid_alive(pid):
                continue
            self._script("down", workdir=workdir, name=workdir.name)
            shutil.rmtree(workdir, ignore_errors=True)

    def start(self) -> None:
        self.reap_stale()
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "owner.pid").write_text(f"{os.getpid()}\n")
        t0 = time.monotonic()
        self.started = True  # from here on, stop() has something to clean up
        proc = self._script("up")
        self.start_seconds = time.monotonic() - t0
        if proc.returncode != 0 or not self.kubeconfig.is_file():
            self._failed = True
            logs = self.workdir / "clusters" / self.name / "logs"
            raise RuntimeError(
                f"starting the kwok cluster failed (exit {proc.returncode}); "
                f"component logs in {logs}\n"
                f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
            )

    def stop(self) -> None:
        if not self.started or self._stopped:
            return
        self._stopped = True
        t0 = time.monotonic()
        self._script("down")
        self.stop_seconds = time.monotonic() - t0
        if not self._failed:  # keep the logs of a failed start until the next session
            shutil.rmtree(self.workdir, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _server_version(kube: Kube) -> tuple[str, str]:
    info = json.loads(kube.kubectl("version", "-o", "json").stdout).get("serverVersion", {})
    git_version = str(info.get("gitVersion", ""))
    major = str(info.get("major", "")).rstrip("+")
    minor = str(info.get("minor", "")).rstrip("+")
    return f"{major}.{minor}", git_version


def _make_env(bin_dir: Path, kubeconfig: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["KUBECONFIG"] = str(kubeconfig)
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    return env


def _missing(bin_dir: Path, names: Sequence[str]) -> list[str]:
    return [n for n in names if not os.access(bin_dir / n, os.X_OK)]


def _existing_cluster(kubeconfig: Path) -> Kube:
    bin_dir = tools_bin()
    if not kubeconfig.is_file():
        pytest.fail(f"{KUBECONFIG_ENV}={kubeconfig} is not a file", pytrace=False)
    tools: dict[str, str] = {}
    for name in CLIENT_TOOLS:
        local = bin_dir / name
        found = str(local) if os.access(local, os.X_OK) else shutil.which(name)
        if not found:
            pytest.fail(
                f"{name} not found in {bin_dir} nor on PATH: run `make tools`", pytrace=False
            )
        tools[name] = found
    kube = Kube(
        kubeconfig=kubeconfig, bin_dir=bin_dir, env=_make_env(bin_dir, kubeconfig), _tools=tools
    )
    kube.version, kube.git_version = _server_version(kube)
    return kube


_SIGTERM_INSTALLED = False


def _exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that fixture teardown and atexit run (CI time-outs)."""
    global _SIGTERM_INSTALLED
    if _SIGTERM_INSTALLED or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    _SIGTERM_INSTALLED = True


# --- pytest hooks and fixtures ----------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "cluster: needs a Kubernetes cluster (local kwok cluster, or FASTSHIP_KUBECONFIG)",
    )


CLUSTER_FIXTURES = frozenset({"kube", "namespace", "restricted_namespace"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if CLUSTER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    """The test cluster: a fresh local kwok cluster, or the one in FASTSHIP_KUBECONFIG."""
    existing = os.environ.get(KUBECONFIG_ENV)
    if existing:
        yield _existing_cluster(Path(existing).expanduser())
        return

    bin_dir = tools_bin()
    missing = _missing(bin_dir, tuple(dict.fromkeys((*CLUSTER_TOOLS, *CLIENT_TOOLS))))
    if missing:
        pytest.fail(
            f"Kubernetes tools missing in {bin_dir}: {', '.join(missing)}. "
            "Run `make tools` (needs Go; see docs/local-cluster.md), "
            f"or point {KUBECONFIG_ENV} at an existing cluster.",
            pytrace=False,
        )

    cluster = LocalCluster(bin_dir)
    _exit_on_sigterm()
    atexit.register(cluster.stop)
    try:
        try:
            cluster.start()
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
        kube = Kube(
            kubeconfig=cluster.kubeconfig,
            bin_dir=bin_dir,
            env=_make_env(bin_dir, cluster.kubeconfig),
            local=True,
        )
        kube.version, kube.git_version = _server_version(kube)
        sys.stderr.write(
            f"\n[kube] kwok cluster {cluster.name} ({kube.git_version}) up in "
            f"{cluster.start_seconds:.1f}s, kubeconfig {cluster.kubeconfig}\n"
        )
        yield kube
    finally:
        cluster.stop()
        atexit.unregister(cluster.stop)
        if cluster.stop_seconds:
            sys.stderr.write(
                f"\n[kube] kwok cluster {cluster.name} down in {cluster.stop_seconds:.1f}s\n"
            )


def _namespace_name(request: pytest.FixtureRequest) -> str:
    base = _sanitize(request.node.name, 40) or "t"
    return f"{base}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test; deleted afterwards (not awaited)."""
    name = kube.create_namespace(_namespace_name(request))
    try:
        yield name
    finally:
        kube.delete_namespace(name)


@pytest.fixture
def restricted_namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace that enforces the Pod Security "restricted" profile."""
    name = kube.create_namespace(_namespace_name(request), labels=RESTRICTED_LABELS)
    try:
        yield name
    finally:
        kube.delete_namespace(name)
