"""Fixtures of the image tests: the local Debian base, one build per session.

The base image is made by `tools/image/base-image.sh` (debootstrap, cached under
`${FASTSHIP_CACHE:-~/.cache/fastship}/image`), because no registry is reachable
here. The image is built once per session from the working tree, with a build
secret `ca` that holds the machine's CA bundle (which pip needs behind this
machine's TLS-inspecting proxy) plus a canary line that the tests then look for
in every layer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.image.engine import BASE_IMAGE_SCRIPT, REPO, Build, Engine
from tests.web.conftest import web_dist  # noqa: F401 - the Dockerfile copies web/dist

IMAGE_TAG = "localhost/fastship:image-test"
VERSION = "0.1.0+image-test"
CANARY = "fastship-image-test-build-secret-canary-3f9e1c"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

# Numbers shown at the end of the run (build times, sizes, start-to-ready).
NUMBERS: dict[str, str] = {}


@dataclass
class Image:
    tag: str
    base: str
    build: Build
    version: str
    revision: str
    secret: Path


@pytest.fixture(scope="session")
def engine() -> Engine:
    if shutil.which("podman") is None:
        pytest.fail(
            "podman is not installed: the image tests build and run the image for real. "
            "apt-get install podman runc debootstrap (listed in .ci/packages.txt)"
        )
    return Engine()


@pytest.fixture(scope="session")
def base_image(engine: Engine) -> str:
    result = subprocess.run(
        [str(BASE_IMAGE_SCRIPT)], capture_output=True, text=True, timeout=1800, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"making the base image failed:\n{result.stderr[-4000:]}")
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def build_secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The machine's CA bundle (what pip needs here) plus a canary comment line."""
    import certifi

    source = HOST_CA_BUNDLE if HOST_CA_BUNDLE.exists() else Path(certifi.where())
    secret = tmp_path_factory.mktemp("secret") / "ca.pem"
    secret.write_text(source.read_text() + f"\n# {CANARY}\n")
    secret.chmod(0o600)
    return secret


def _revision() -> str:
    result = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or "unknown"


@pytest.fixture(scope="session")
def image(
    engine: Engine, base_image: str, build_secret: Path, request: pytest.FixtureRequest
) -> Image:
    """The image of the working tree, with the web interface built first (the
    Dockerfile copies web/dist)."""
    request.getfixturevalue("web_dist")
    revision = _revision()
    build = engine.build(
        REPO,
        tag=IMAGE_TAG,
        base_image=base_image,
        ca_bundle=build_secret,
        build_args={
            "VERSION": VERSION,
            "REVISION": revision,
            "SOURCE": "https://example.invalid/fastship.git",
        },
    )
    cached = sum(1 for _, hit in build.steps() if hit)
    NUMBERS["session build"] = (
        f"{build.seconds:.1f} s ({cached} of {len(build.steps())} steps from the cache)"
    )
    base_size = engine.size(base_image)
    size = engine.size(IMAGE_TAG)
    NUMBERS["image size"] = (
        f"{size / 1e6:.0f} MB, {(size - base_size) / 1e6:.0f} MB on top of the base "
        f"({base_size / 1e6:.0f} MB)"
    )
    return Image(
        tag=IMAGE_TAG,
        base=base_image,
        build=build,
        version=VERSION,
        revision=revision,
        secret=build_secret,
    )


@pytest.fixture
def jwt_key() -> str:
    return os.urandom(24).hex()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if NUMBERS:
        terminalreporter.section("container image")
        for key, value in NUMBERS.items():
            terminalreporter.write_line(f"{key}: {value}")
