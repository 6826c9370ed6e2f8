"""skaffold on the real node: the dev loop of docs/dev-loop.md, end to end.

skaffold runs inside the node's network namespace (tools/skaffold-node.sh), builds the
image with podman (k8s/skaffold/podman-build.sh, profiles ``realnode`` and
``realnode-dev``), copies it into the node's containerd and deploys the chart; its
port-forwards listen on the namespace's loopback, which the tests reach with nsenter.
Every test works in a copy of the repository: the edits never touch the real tree.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.image.engine import REPO, Engine
from tests.realnode.conftest import NUMBERS, Node, ready
from tests.support.kube import tools_bin
from tests.support.waiting import wait_until

NAMESPACE = "fastship"
RELEASE = "fastship"
PORT_FORWARD = re.compile(
    r"Port forwarding service/fastship in namespace fastship, remote port 80 -> "
    r"http://(127\.0\.0\.1:\d+)"
)
# The first deployment builds the image (cached layers) and starts Postgres, the
# migrations and the app on a small, shared machine.
DEPLOY_TIMEOUT = 900.0

GET = """
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
except OSError as e:
    print(0); print(e)
"""


def get(node: Node, url: str) -> tuple[int, str]:
    """GET a URL from inside the node's network namespace (where the port-forwards are)."""
    result = node.run(sys.executable, "-c", GET, url, timeout=30, check=False)
    status, _, body = result.stdout.partition("\n")
    return (int(status) if status.strip().isdigit() else 0), body


def wait_http(
    node: Node, url: str, accept: Callable[[int, str], bool], timeout: float, what: str
) -> float:
    """Poll URL until `accept(status, body)`; returns the seconds it took."""
    started = time.monotonic()
    last: list[tuple[int, str]] = [(0, "")]

    def accepted() -> bool:
        last[0] = get(node, url)
        return accept(*last[0])

    try:
        wait_until(accepted, timeout=timeout, interval=0.5, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last answer of {url}: {last[0]}") from None
    return time.monotonic() - started


class Skaffold:
    """One skaffold command, run by tools/skaffold-node.sh in a copy of the repository."""

    def __init__(self, node: Node, workspace: Path, images: dict[str, str], *args: str) -> None:
        self.node = node
        self.log = workspace / f"skaffold-{args[0]}-{secrets.token_hex(3)}.log"
        env = dict(
            os.environ,
            FASTSHIP_NODE_WORKDIR=str(node.workdir),
            TOOLS_BIN=str(tools_bin()),
            BASE_IMAGE=images["base"],
        )
        env.pop("KUBECONFIG", None)
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [str(workspace / "tools" / "skaffold-node.sh"), "skaffold", *args],
                cwd=workspace,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def wait_for(self, pattern: re.Pattern[str], timeout: float, after: int = 0) -> re.Match[str]:
        """Wait for PATTERN in the output (from offset AFTER); fail if skaffold exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = pattern.search(self.text(), after)
            if found:
                return found
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"skaffold exited {self.proc.returncode} before {pattern.pattern!r}:\n"
                    + self.tail()
                )
            time.sleep(0.5)
        raise AssertionError(f"no {pattern.pattern!r} within {timeout:.0f}s:\n" + self.tail())

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"skaffold still runs after {timeout:.0f}s:\n{self.tail()}"
            ) from None

    def stop(self, timeout: float = 300) -> int:
        """Ctrl+C, as a person would; killed if it does not end in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        return self.proc.returncode


def copy_repo(target: Path) -> None:
    """The tracked files and the built web UI (the Dockerfile copies web/dist)."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = REPO / os.fsdecode(name)
        if not os.path.lexists(source):
            continue
        dest = target / os.fsdecode(name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest, follow_symlinks=False)
    shutil.copytree(REPO / "web" / "dist", target / "web" / "dist", dirs_exist_ok=True)


@pytest.fixture(scope="module")
def workspace(
    tmp_path_factory: pytest.TempPathFactory, node: Node, images: dict[str, str]
) -> Iterator[Path]:
    target = tmp_path_factory.mktemp("skaffold") / "repo"
    copy_repo(target)
    script = [str(target / "tools" / "skaffold-node.sh")]
    env = dict(os.environ, FASTSHIP_NODE_WORKDIR=str(node.workdir), TOOLS_BIN=str(tools_bin()))
    env.pop("KUBECONFIG", None)
    try:
        yield target
    finally:
        # The release (if a test left it), then the namespace and the volume, then
        # podman's API service; and the image tags the builds made.
        node.kube.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", check=False, timeout=300)
        subprocess.run([*script, "purge"], env=env, timeout=300, check=False)
        tags: set[str] = set()
        # " - fastship -> fastship:latest": the tag built; "loaded ...": the tag by ID.
        built = re.compile(r"^ - fastship -> fastship:(\S+)$", re.MULTILINE)
        loaded = re.compile(r"loaded (docker\.io/library/fastship:[0-9a-f]{64})")
        for log in target.glob("skaffold-*.log"):
            text = log.read_text()
            tags.update(loaded.findall(text))
            tags.update(f"docker.io/library/fastship:{tag}" for tag in built.findall(text))
        if tags:
            Engine()("rmi", "--ignore", *sorted(tags), check=False, timeout=300)


@pytest.fixture
def cleanup(node: Node) -> Iterator[list[Skaffold]]:
    """Skaffold processes of a test: stopped, and the release removed, also on failure."""
    started: list[Skaffold] = []
    yield started
    for run in started:
        run.stop()
    node.kube.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", check=False, timeout=300)


def kubectl_json(node: Node, *args: str) -> Any:
    return json.loads(node.kube.kubectl("-n", NAMESPACE, *args, "-o", "json").stdout)


def server_pods(node: Node) -> list[dict[str, Any]]:
    pods = kubectl_json(node, "get", "pods", "-l", "app.kubernetes.io/component=server")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def deployed_image(node: Node) -> str:
    deployment = kubectl_json(node, "get", "deployment", RELEASE)
    image: str = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def test_run_deploys_and_answers_through_port_forward(
    node: Node, workspace: Path, images: dict[str, str], cleanup: list[Skaffold]
) -> None:
    started = time.monotonic()
    run = Skaffold(node, workspace, images, "run", "--port-forward")
    cleanup.append(run)
    address = run.wait_for(PORT_FORWARD, DEPLOY_TIMEOUT).group(1)
    wait_http(
        node, f"http://{address}/readyz", lambda s, _: s == 200, 120, "/readyz via port-forward"
    )
    NUMBERS["skaffold run to serving (port-forward)"] = f"{time.monotonic() - started:.1f} s"
    status, body = get(node, f"http://{address}/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    # The image podman built, by its ID, as skaffold deploys a local build.
    assert re.fullmatch(r"fastship:[0-9a-f]{64}", deployed_image(node)), deployed_image(node)
    assert kubectl_json(node, "get", "hpa")["items"], "the chart's defaults have the HPA on"


def test_dev_syncs_rebuilds_and_cleans_up(
    node: Node, workspace: Path, images: dict[str, str], cleanup: list[Skaffold]
) -> None:
    started = time.monotonic()
    dev = Skaffold(node, workspace, images, "dev", "--port-forward")
    cleanup.append(dev)
    address = dev.wait_for(PORT_FORWARD, DEPLOY_TIMEOUT).group(1)
    base = f"http://{address}"
    wait_http(node, f"{base}/readyz", lambda s, _: s == 200, 120, "first skaffold dev")
    NUMBERS["skaffold dev: start to serving"] = f"{time.monotonic() - started:.1f} s"
    dev.wait_for(re.compile(r"Watching for changes"), 120)
    assert not kubectl_json(node, "get", "hpa")["items"], "the dev profile turns the HPA off"
    (pod,) = server_pods(node)
    image = deployed_image(node)
    builds = dev.text().count("Building [fastship]")

    # A source file under app/: copied into the running container, no image build.
    token = secrets.token_hex(4)
    health = workspace / "app" / "api" / "routes" / "health.py"
    source = health.read_text()
    assert '_OK = b\'{"status":"ok"}\'' in source
    health.write_text(
        source.replace('_OK = b\'{"status":"ok"}\'', f'_OK = b\'{{"status":"ok {token}"}}\'')
    )
    edited = time.monotonic()
    seconds = wait_http(
        node, f"{base}/healthz", lambda s, b: token in b, 120, "the synced edit of health.py"
    )
    NUMBERS["skaffold dev: file sync to served"] = f"{time.monotonic() - edited:.1f} s"
    assert seconds < 120
    assert "Syncing 1 files for fastship" in dev.text(), dev.tail()
    assert dev.text().count("Building [fastship]") == builds, "a synced file must not rebuild"
    (same,) = server_pods(node)
    assert same["metadata"]["name"] == pod["metadata"]["name"]
    assert (
        same["status"]["containerStatuses"][0]["restartCount"]
        == (pod["status"]["containerStatuses"][0]["restartCount"])
    )
    assert deployed_image(node) == image

    # The Dockerfile: a new image, a new rollout, and the new pods serve it.
    title = f"fastship-devloop-{token}"
    dockerfile = workspace / "Dockerfile"
    dockerfile.write_text(
        dockerfile.read_text() + f"ENV FASTSHIP_APP_NAME={title} FASTSHIP_DOCS_ENABLED=true\n"
    )
    changed = time.monotonic()
    offset = len(dev.text())
    dev.wait_for(re.compile(r"Building \[fastship\]"), 60, after=offset)
    wait_http(
        node,
        f"{base}/openapi.json",
        lambda s, b: s == 200 and json.loads(b)["info"]["title"] == title,
        DEPLOY_TIMEOUT,
        "the rebuilt image",
    )
    NUMBERS["skaffold dev: Dockerfile change (rebuild, redeploy) to served"] = (
        f"{time.monotonic() - changed:.1f} s"
    )
    new_image = deployed_image(node)
    assert new_image != image
    node.kube.kubectl(
        "-n", NAMESPACE, "rollout", "status", f"deployment/{RELEASE}", "--timeout=300s"
    )
    pods = server_pods(node)
    assert pods
    assert all(p["spec"]["containers"][0]["image"] == new_image for p in pods)
    assert pod["metadata"]["name"] not in {p["metadata"]["name"] for p in pods}
    # The synced edit is part of the new image too (the build reads the edited tree).
    status, body = get(node, f"{base}/healthz")
    assert status == 200
    assert token in body

    # Ctrl+C: skaffold removes what it deployed (the chart keeps the database's claim
    # and Secret by design).
    stopped = time.monotonic()
    assert dev.stop() == 0, dev.tail()
    NUMBERS["skaffold dev: Ctrl+C to cleaned up"] = f"{time.monotonic() - stopped:.1f} s"
    releases = json.loads(node.kube.helm("list", "-n", NAMESPACE, "-o", "json").stdout)
    assert releases == []
    left = kubectl_json(node, "get", "deployments,statefulsets,services,jobs,hpa")["items"]
    assert left == [], [f"{i['kind']}/{i['metadata']['name']}" for i in left]


def test_prod_profile_deploys_with_the_hpa(
    node: Node, workspace: Path, images: dict[str, str], cleanup: list[Skaffold]
) -> None:
    started = time.monotonic()
    run = Skaffold(node, workspace, images, "run", "-p", "prod")
    cleanup.append(run)
    assert run.wait(DEPLOY_TIMEOUT) == 0, run.tail()
    NUMBERS["skaffold run -p prod to stabilized"] = f"{time.monotonic() - started:.1f} s"
    (hpa,) = kubectl_json(node, "get", "hpa")["items"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == RELEASE
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    deployment = kubectl_json(node, "get", "deployment", RELEASE)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    wait_until(
        lambda: sum(ready(p) for p in server_pods(node)) >= 2,
        timeout=300,
        interval=2,
        what="the HPA's two replicas Ready",
    )
