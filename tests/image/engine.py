"""Drive the container engine (podman, with the project's settings) from the image tests.

Everything here runs the real engine: `tools/image/podman` is podman with
`tools/image/containers.conf`. Containers use the host network, so the server in
the container reaches the test Postgres on 127.0.0.1 and the tests reach the
server on a free loopback port.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import shutil
import socket
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PODMAN = REPO / "tools" / "image" / "podman"
BASE_IMAGE_SCRIPT = REPO / "tools" / "image" / "base-image.sh"

# What the Dockerfile copies from the repository (see .dockerignore).
CONTEXT_PATHS = (
    "Dockerfile",
    ".dockerignore",
    "pyproject.toml",
    "constraints.txt",
    "README.md",
    "app",
    "operator",
    "web/dist",
)


class EngineError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        tail = "\n".join(str(self.output or "").splitlines()[-40:])
        return f"{' '.join(map(str, self.cmd[:4]))} ... exited {self.returncode}:\n{tail}"


@dataclass
class Engine:
    """`podman` with the project's settings."""

    program: Path = PODMAN

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.program), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise EngineError(result.returncode, result.args, output=result.stdout + result.stderr)
        return result

    def build(
        self,
        context: Path,
        *,
        tag: str,
        base_image: str,
        ca_bundle: Path | None,
        build_args: Mapping[str, str] = {},
        dockerfile: Path | None = None,
        timeout: float = 1800,
    ) -> Build:
        args = [
            "build",
            "--network",
            "host",
            "--layers",
            "-t",
            tag,
            "--build-arg",
            f"BASE_IMAGE={base_image}",
        ]
        for key, value in build_args.items():
            args += ["--build-arg", f"{key}={value}"]
        if ca_bundle is not None:
            args += ["--secret", f"id=ca,src={ca_bundle}"]
        if dockerfile is not None:
            args += ["-f", str(dockerfile)]
        started = time.monotonic()
        result = self(*args, str(context), timeout=timeout)
        return Build(
            tag=tag, output=result.stdout + result.stderr, seconds=time.monotonic() - started
        )

    def inspect(self, image: str) -> dict[str, object]:
        data = json.loads(self("image", "inspect", image).stdout)
        assert isinstance(data, list)
        found: dict[str, object] = data[0]
        return found

    def layers(self, image: str) -> list[str]:
        root = self.inspect(image)["RootFS"]
        assert isinstance(root, dict)
        return list(root["Layers"])

    def size(self, image: str) -> int:
        return int(self("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())


@dataclass
class Build:
    tag: str
    output: str
    seconds: float

    def steps(self) -> list[tuple[str, bool]]:
        """Each build step's instruction and whether it came from the cache."""
        steps: list[tuple[str, bool]] = []
        for line in self.output.splitlines():
            if " STEP " in line and line.startswith("["):
                steps.append((line.split(": ", 1)[1], False))
            elif line.startswith("--> Using cache") and steps:
                steps[-1] = (steps[-1][0], True)
        return steps


def copy_context(target: Path) -> Path:
    """A copy of the build context, to build a changed tree without touching the repo."""
    target.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".mypy_cache")
    for name in CONTEXT_PATHS:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, target / name)
    return target


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_get(port: int, path: str, timeout: float = 5) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class Container:
    engine: Engine
    name: str
    port: int | None = None
    started: float = field(default_factory=time.monotonic)

    def logs(self) -> str:
        result = self.engine("logs", self.name, check=False)
        return result.stdout + result.stderr

    def signal(self, name: str) -> None:
        self.engine("kill", "--signal", name, self.name)

    def wait(self, timeout: float = 60) -> int:
        result = self.engine("wait", self.name, timeout=timeout)
        return int(result.stdout.strip().splitlines()[-1])

    def exec(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return self.engine("exec", self.name, *cmd)

    def host_pid(self) -> int:
        return int(self.engine("inspect", "--format", "{{.State.Pid}}", self.name).stdout)

    def wait_ready(self, path: str = "/readyz", timeout: float = 90) -> float:
        """Seconds from `podman run` until `path` answered 200."""
        assert self.port is not None
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                status, body = http_get(self.port, path, timeout=2)
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if status == 200:
                    return time.monotonic() - self.started
                last = f"{status} {body[:300]!r}"
            state = self.engine("inspect", "--format", "{{.State.Status}}", self.name).stdout
            if state.strip() in ("exited", "stopped"):
                raise AssertionError(f"container exited before {path} answered:\n{self.logs()}")
            time.sleep(0.1)
        raise AssertionError(
            f"{path} did not answer 200 in {timeout:g}s (last: {last}):\n{self.logs()[-4000:]}"
        )


@contextlib.contextmanager
def running(
    engine: Engine,
    image: str,
    *command: str,
    env: Mapping[str, str] = {},
    options: Sequence[str] = (),
    port: int | None = None,
) -> Iterator[Container]:
    """A detached container on the host network, removed afterwards whatever happens."""
    name = f"fastship-test-{uuid.uuid4().hex[:10]}"
    args = ["run", "-d", "--name", name, "--network", "host", *options]
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    container = Container(engine, name, port=port)
    engine(*args, image, *command)
    try:
        yield container
    finally:
        engine("rm", "--force", "--time", "0", name, check=False)


def layer_blobs(engine: Engine, image: str, target: Path, *, skip_layers: int = 0) -> list[Path]:
    """Save `image` as an OCI layout; return its config, manifest and layer blobs,
    leaving out its first `skip_layers` layers (those of its base image)."""
    engine("save", "--format", "oci-dir", "-o", str(target), image, timeout=600)
    blobs = target / "blobs" / "sha256"
    index = json.loads((target / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"]
    manifest = json.loads((blobs / manifest_digest.split(":")[1]).read_text())
    layers = [layer["digest"] for layer in manifest["layers"]][skip_layers:]
    wanted = [manifest_digest, manifest["config"]["digest"], *layers]
    return [blobs / digest.split(":")[1] for digest in wanted]


def _files_in(blob: Path) -> Iterator[tuple[str, bytes]]:
    """The files of a layer tar (gzip or not), or the blob itself when it is no tar."""
    with blob.open("rb") as handle:
        compressed = handle.read(2) == b"\x1f\x8b"
    with gzip.open(blob, "rb") if compressed else blob.open("rb") as raw:
        try:
            with tarfile.open(fileobj=raw, mode="r|") as archive:
                for member in archive:
                    content = archive.extractfile(member) if member.isfile() else None
                    if content is not None:
                        yield f"{blob.name[:12]}:{member.name}", content.read()
            return
        except tarfile.ReadError:  # the image config or a manifest (JSON)
            pass
    yield blob.name[:12], blob.read_bytes()


def find_in_blobs(blobs: Iterable[Path], needles: Mapping[str, bytes]) -> list[str]:
    """Where any needle occurs: in a file of a layer, or in the image config."""
    found: list[str] = []
    for blob in blobs:
        for where, content in _files_in(blob):
            found += [
                f"{label} in {where}" for label, needle in needles.items() if needle in content
            ]
    return found
