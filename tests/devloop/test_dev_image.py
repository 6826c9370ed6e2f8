"""The dev profile's image (k8s/skaffold/Dockerfile.dev) does what `skaffold dev` needs.

Built for real with podman on top of the image of the root Dockerfile (the image tests'
session build), and run as the dev profile runs it in a pod: the image's user, no
capabilities, no privilege escalation, a writable root. A file is then copied in the
way skaffold's file sync does it (`tar xmf - -C / --no-same-owner` through an exec, as
the container's user), and the server must serve the new code.
"""

from __future__ import annotations

import io
import secrets
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.devloop.conftest import NUMBERS
from tests.devloop.skaffoldcfg import REPO_ROOT, effective, load
from tests.image.conftest import Image
from tests.image.engine import Container, Engine, http_get, running
from tests.support.waiting import free_port

pytestmark = [pytest.mark.image, pytest.mark.slow]

DEV_TAG = "localhost/fastship:skaffold-dev-test"
HEALTH = Path("app/api/routes/health.py")
# skaffold's sync: kubectl exec <pod> -c <container> -i -- tar xmf - -C / --no-same-owner
SYNC_COMMAND = ("tar", "xmf", "-", "-C", "/", "--no-same-owner")
DEV_POD = (
    "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
    "--tmpfs", "/tmp:rw,size=64m,mode=1777",
)  # fmt: skip


@pytest.fixture(scope="module")
def dev_image(engine: Engine, image: Image) -> str:
    (artifact,) = effective(load(), "dev")["build"]["artifacts"]
    build = engine.build(
        REPO_ROOT / artifact["context"],
        tag=DEV_TAG,
        base_image=image.base,
        ca_bundle=None,
        # the hook's tag is this session's build of the root Dockerfile
        build_args={"BASE": image.tag},
        dockerfile=REPO_ROOT / artifact["docker"]["dockerfile"],
    )
    NUMBERS["dev image build on top of the root image"] = f"{build.seconds:.1f} s"
    return DEV_TAG


@pytest.fixture
def dev_server(engine: Engine, dev_image: str, jwt_key: str) -> Iterator[Container]:
    port = free_port()
    env = {
        "FASTSHIP_PORT": str(port),
        "FASTSHIP_ENVIRONMENT": "production",
        "FASTSHIP_JWT_SECRET_KEY": jwt_key,
        "FASTSHIP_LOG_LEVEL": "DEBUG",
    }
    with running(engine, dev_image, env=env, options=DEV_POD, port=port) as container:
        container.wait_ready("/healthz")
        yield container


def skaffold_sync(engine: Engine, container: Container, files: dict[str, bytes]) -> None:
    """What skaffold's sync runs: a tar of the files, unpacked at / by the container's user."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name.lstrip("/"))
            info.size = len(data)
            info.mtime = int(time.time())
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    proc = subprocess.run(
        [str(engine.program), "exec", "-i", container.name, *SYNC_COMMAND],
        input=buffer.getvalue(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"sync failed: {proc.stderr.decode()}"


def test_dev_image_runs_reload_server_as_the_service_user(engine: Engine, dev_image: str) -> None:
    config = engine.inspect(dev_image)["Config"]
    assert isinstance(config, dict)
    assert config["User"] == "10001:10001"
    assert config["Cmd"] == ["python", "-m", "app", "serve", "--reload"]
    assert config["Entrypoint"] == ["tini", "--"]


def test_synced_file_is_served_without_a_restart_of_the_container(
    engine: Engine, dev_server: Container
) -> None:
    (rule,) = effective(load(), "dev")["build"]["artifacts"][0]["sync"]["manual"]
    marker = f"synced-{secrets.token_hex(4)}"
    source = (REPO_ROOT / HEALTH).read_text()
    assert """_OK = b'{"status":"ok"}'""" in source
    changed = source.replace(
        """_OK = b'{"status":"ok"}'""", f"""_OK = b'{{"status":"{marker}"}}'"""
    )
    pid_before = dev_server.host_pid()

    started = time.monotonic()
    skaffold_sync(engine, dev_server, {f"{rule['dest']}/{HEALTH}": changed.encode()})
    deadline = started + 60
    body = b""
    while time.monotonic() < deadline:
        try:
            _, body = http_get(dev_server.port or 0, "/healthz", timeout=2)
        except OSError:
            body = b""
        if marker.encode() in body:
            break
        time.sleep(0.1)
    seconds = time.monotonic() - started
    assert marker.encode() in body, (
        f"/healthz still answers {body!r} 60 s after the sync:\n{dev_server.logs()[-3000:]}"
    )
    NUMBERS["dev loop: sync to new code served"] = f"{seconds:.1f} s"
    # The reloader restarted the server process inside the same container.
    assert dev_server.host_pid() == pid_before
