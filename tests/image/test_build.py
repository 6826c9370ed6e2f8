"""What the build produces: metadata, contents, layers, and no trace of the build secret."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import certifi
import pytest

from tests.image.conftest import CANARY, Image
from tests.image.engine import REPO, Engine, copy_context, find_in_blobs, layer_blobs

pytestmark = [pytest.mark.image, pytest.mark.slow]

# What the Dockerfile may add on top of its base: the runtime venv (byte-compiled),
# tini, the user and fastship itself (docs/image.md breaks it down).
ADDED_BUDGET_BYTES = 80_000_000


def test_image_config_is_the_contract(engine: Engine, image: Image) -> None:
    config = engine.inspect(image.tag)["Config"]
    assert isinstance(config, dict)
    assert config["Entrypoint"] == ["tini", "--"]
    assert config["Cmd"] == ["python", "-m", "app", "serve"]
    assert config["User"] == "10001:10001"
    assert "8000/tcp" in config["ExposedPorts"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["FASTSHIP_HOST"] == "0.0.0.0"  # noqa: S104 - in the container
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["MALLOC_MMAP_THRESHOLD_"] == "1048576"  # argon2's blocks go back when freed
    assert env["FASTSHIP_BUILD_VERSION"] == image.version
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == image.version
    assert labels["org.opencontainers.image.revision"] == image.revision
    assert labels["org.opencontainers.image.source"] == "https://example.invalid/fastship.git"
    # The license the repository carries (LICENSE's first line names it).
    license_name = (REPO / "LICENSE").read_text().split()[0]
    assert labels["org.opencontainers.image.licenses"] == license_name


INSPECT_CONTENTS = r"""
import importlib.util, json, os, pathlib, shutil, subprocess, sys
import app, fastship_operator
out = {
    "python": sys.version.split()[0],
    "executable": sys.executable,
    "app": app.__file__,
    "version": app.__version__,
    "build_info": pathlib.Path("/opt/fastship/build-info").read_text(),
    "operator": fastship_operator.__file__,
    "pip": importlib.util.find_spec("pip") is not None,
    "setuptools": importlib.util.find_spec("setuptools") is not None,
    "modules": {name: importlib.util.find_spec(name) is not None
                for name in ("uvloop", "httptools", "yaml", "kubernetes", "watchfiles",
                             "websockets", "requests")},
    "tools": {name: shutil.which(name) for name in ("gcc", "cc", "strip", "pip", "tini")},
    "tini_package": subprocess.run(["dpkg-query", "-W", "-f", "${Status}", "tini"],
                                   capture_output=True, text=True).stdout,
    "paths": {p: os.path.exists(p) for p in ("/src", "/opt/build", "/root/.cache/pip",
                                              "/opt/fastship/tests", "/opt/fastship/docs",
                                              "/opt/fastship/bin", "/var/lib/apt/lists/lock")},
    "apt_lists": len(list(pathlib.Path("/var/lib/apt/lists").glob("*_Packages"))),
    "sources_without_pyc": [
        str(p) for p in pathlib.Path("/opt/fastship").rglob("*.py")
        if not list(p.parent.joinpath("__pycache__").glob(p.stem + ".*.pyc"))
    ][:5],
}
print(json.dumps(out))
"""


def test_final_stage_has_the_runtime_and_nothing_of_the_build(engine: Engine, image: Image) -> None:
    result = engine(
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "python",
        image.tag,
        "-c",
        INSPECT_CONTENTS,
    )
    found = json.loads(result.stdout)
    assert found["executable"].startswith("/opt/venv/")
    assert found["app"].startswith("/opt/fastship/app/")
    assert found["operator"].startswith("/opt/fastship/fastship_operator/")
    assert found["version"] == image.version
    assert found["build_info"] == (
        f"version={image.version}\nrevision={image.revision}\n"
        "source=https://example.invalid/fastship.git\n"
    )
    assert found["tools"]["tini"] == "/usr/bin/tini"
    assert found["tini_package"] == "install ok installed"
    # No compiler, no pip, no build backend, no builder leftovers, no apt lists.
    assert {k: v for k, v in found["tools"].items() if k != "tini" and v} == {}
    assert not found["pip"]
    assert not found["setuptools"]
    assert found["paths"] == dict.fromkeys(found["paths"], False)
    assert found["apt_lists"] == 0
    # Byte-compiled at build time: the root filesystem is read-only at run time.
    assert found["sources_without_pyc"] == []
    # The server's HTTP parser is there, not uvloop (serve runs on asyncio's loop); no
    # Kubernetes client library (the operator talks to the API server through kopf's
    # aiohttp), nor what only tests or `--reload` use.
    assert found["modules"] == {
        "uvloop": False,
        "httptools": True,
        "yaml": True,
        "kubernetes": False,
        "watchfiles": False,
        "websockets": False,
        "requests": False,
    }


def _local_only_certificates(bundle: Path) -> dict[str, bytes]:
    """Certificates of the build secret that are no public CA (a proxy's own CA)."""
    pem = re.compile(r"-----BEGIN CERTIFICATE-----\n(.+?)-----END CERTIFICATE-----", re.S)
    public_files = [Path(certifi.where()), *Path("/usr/share/ca-certificates").rglob("*.crt")]
    public = {body for path in public_files for body in pem.findall(path.read_text())}
    local = [body for body in pem.findall(bundle.read_text()) if body not in public]
    # The first base64 line of a certificate is unique enough to find it anywhere.
    return {f"local CA #{i}": body.splitlines()[1].encode() for i, body in enumerate(local)}


def _secret_needles(secret: Path) -> dict[str, bytes]:
    return {"canary": CANARY.encode(), **_local_only_certificates(secret)}


def test_no_layer_contains_the_build_secret(engine: Engine, image: Image, tmp_path: Path) -> None:
    needles = _secret_needles(image.secret)
    base_layers = len(engine.layers(image.base))
    blobs = layer_blobs(engine, image.tag, tmp_path / "oci", skip_layers=base_layers)
    assert len(blobs) >= 5  # manifest, config and the layers of the Dockerfile
    assert find_in_blobs(blobs, needles) == []


def test_secret_search_finds_a_leaked_secret(engine: Engine, image: Image, tmp_path: Path) -> None:
    """The search of the previous test, on an image that copies the secret into a layer."""
    context = tmp_path / "leaky"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
        "RUN --mount=type=secret,id=ca,target=/run/secrets/ca cp /run/secrets/ca /leaked.pem\n"
    )
    tag = "localhost/fastship:image-test-leaky"
    engine.build(context, tag=tag, base_image=image.base, ca_bundle=image.secret)
    try:
        blobs = layer_blobs(engine, tag, tmp_path / "oci", skip_layers=1)
        found = find_in_blobs(blobs, _secret_needles(image.secret))
    finally:
        engine("rmi", "--force", tag, check=False)
    assert any(hit.startswith("canary in ") and hit.endswith("leaked.pem") for hit in found)


def test_code_change_reuses_the_dependency_layers(
    engine: Engine, image: Image, tmp_path: Path
) -> None:
    context = copy_context(tmp_path / "context")
    module = context / "app" / "__init__.py"
    lines = module.read_text().splitlines(keepends=True)
    # A change never built before on this machine: the engine keeps the layers of
    # earlier runs (the code stage is an intermediate image `rmi` leaves behind),
    # so a fixed edit would be a cache hit from the second run on.
    marker = uuid.uuid4().hex
    lines[0] = f'"""fastship: a FastAPI service built to run on Kubernetes ({marker})."""\n'
    module.write_text("".join(lines))
    tag = "localhost/fastship:image-test-changed"
    try:
        build = engine.build(
            context,
            tag=tag,
            base_image=image.base,
            ca_bundle=image.secret,
            build_args={"VERSION": image.version, "REVISION": "changed"},
        )
        before, after = engine.layers(image.tag), engine.layers(tag)
        labels = engine.inspect(tag)["Config"]["Labels"]  # type: ignore[index]
    finally:
        engine("rmi", "--force", tag, check=False)
    from tests.image.conftest import NUMBERS

    NUMBERS["rebuild after a one-line change in app/"] = f"{build.seconds:.1f} s"
    steps = build.steps()
    cached = {step for step, hit in steps if hit}
    rebuilt = {step for step, hit in steps if not hit}
    assert any("pip install" in step for step in cached), steps
    assert any("apt-get" in step and "tini" in step for step in cached), steps
    assert any("dpkg --install" in step for step in cached), steps
    assert "COPY app ./app" in rebuilt
    # Same base, tini and dependency layers; the code layer differs. (The web interface's
    # layer, just before it, is the same files, but `make web-build` may have written them
    # again in between when other tests ran it: its digest is not compared.)
    assert len(before) == len(after)
    assert before[:-2] == after[:-2]
    assert before[-1] != after[-1]
    assert labels["org.opencontainers.image.revision"] == "changed"


def test_size_added_to_the_base(engine: Engine, image: Image) -> None:
    added = engine.size(image.tag) - engine.size(image.base)
    assert added <= ADDED_BUDGET_BYTES, (
        f"the Dockerfile adds {added / 1e6:.0f} MB to its base "
        f"(budget {ADDED_BUDGET_BYTES / 1e6:.0f} MB)"
    )
