"""tools/dev-check.sh: the make targets of the dev loop stop early, naming what is needed.

docker and kind cannot run on the machines these tests run on (no Docker engine, no
downloads), so they, skaffold and podman are stand-ins here: tiny scripts that print
what the real programs print for their version commands. kubectl and helm are the real
ones from `make tools`. (skaffold and podman themselves run in
tests/realnode/test_skaffold.py.)
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.devloop.skaffoldcfg import REPO_ROOT
from tests.support.kube import tools_bin

DEV_CHECK = REPO_ROOT / "tools" / "dev-check.sh"


def stand_in(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def fake_tools(
    bin_dir: Path,
    *,
    docker: str = "27.3.1",
    docker_daemon: bool = True,
    kind: str = "v0.33.0",
    skaffold: str = "v2.16.1",
) -> None:
    bin_dir.mkdir(exist_ok=True)
    info = "echo 27.3.1" if docker_daemon else "echo 'Cannot connect to the daemon' >&2; exit 1"
    stand_in(
        bin_dir,
        "docker",
        f"""case "$1" in
  version) echo {docker} ;;
  info) {info} ;;
esac""",
    )
    stand_in(bin_dir, "kind", f"echo 'kind {kind} go1.24.6 linux/amd64'")
    stand_in(bin_dir, "skaffold", f"echo {skaffold}")


def run(bin_dir: Path, *args: str, extra_path: str = "") -> subprocess.CompletedProcess[str]:
    # Only the stand-ins, the real helm and kubectl, and the shell's basics.
    path = ":".join(p for p in (str(bin_dir), extra_path, "/usr/bin", "/bin") if p)
    return subprocess.run(
        [str(DEV_CHECK), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": path, "HOME": os.environ.get("HOME", "/root")},
        check=False,
    )


def real_tools() -> str:
    bin_dir = tools_bin()
    for tool in ("helm", "kubectl"):
        if not (bin_dir / tool).exists():
            pytest.fail(f"{tool} not found in {bin_dir}: run `make tools`", pytrace=False)
    return str(bin_dir)


ALL = ("docker=20.10.0", "kind=0.33.0", "kubectl=1.30.0", "skaffold=2.15.0", "helm=3.2.0")


def test_everything_present_and_new_enough(tmp_path: Path) -> None:
    fake_tools(tmp_path / "bin")
    proc = run(tmp_path / "bin", *ALL, extra_path=real_tools())
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_missing_program_names_the_version_needed(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    proc = run(tmp_path / "bin", "kind=0.33.0", "skaffold=2.15.0")
    assert proc.returncode == 1
    assert "kind not found on PATH: version 0.33.0 or newer is needed" in proc.stderr
    assert "skaffold not found on PATH: version 2.15.0 or newer is needed" in proc.stderr


@pytest.mark.parametrize(
    ("tools", "arg", "expected"),
    [
        ({"kind": "v0.29.0"}, "kind=0.33.0", "kind 0.29.0 is too old: version 0.33.0 or newer"),
        ({"skaffold": "v2.14.2"}, "skaffold=2.15.0", "skaffold 2.14.2 is too old: version 2.15.0"),
        ({"docker": "19.03.15"}, "docker=20.10.0", "docker 19.03.15 is too old: version 20.10.0"),
        # versions compare as numbers, not as text
        ({"kind": "v0.4.0"}, "kind=0.33.0", "kind 0.4.0 is too old"),
    ],
)
def test_too_old_names_the_version_needed(
    tmp_path: Path, tools: dict[str, str], arg: str, expected: str
) -> None:
    fake_tools(tmp_path / "bin", **tools)  # type: ignore[arg-type]
    proc = run(tmp_path / "bin", arg)
    assert proc.returncode == 1
    assert expected in proc.stderr, proc.stderr


def test_newer_than_minimum_passes(tmp_path: Path) -> None:
    fake_tools(tmp_path / "bin", kind="v0.100.0", skaffold="v2.15.0")
    proc = run(tmp_path / "bin", "kind=0.33.0", "skaffold=2.15.0")
    assert proc.returncode == 0, proc.stderr


def test_docker_without_daemon(tmp_path: Path) -> None:
    fake_tools(tmp_path / "bin", docker_daemon=False)
    proc = run(tmp_path / "bin", "docker=20.10.0")
    assert proc.returncode == 1
    assert "no Docker daemon answers" in proc.stderr


def test_real_helm_too_old_is_reported(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    proc = run(tmp_path / "bin", "helm=99.0.0", extra_path=real_tools())
    assert proc.returncode == 1
    assert "is too old: version 99.0.0 or newer is needed" in proc.stderr


def test_helm4_needs_a_newer_skaffold(tmp_path: Path) -> None:
    fake_tools(tmp_path / "bin", skaffold="v2.16.1")
    stand_in(tmp_path / "bin", "helm", "echo v4.0.1")
    proc = run(tmp_path / "bin", "skaffold=2.15.0", "helm=3.2.0")
    assert proc.returncode == 1
    assert "skaffold up to v2.16 cannot use helm 4" in proc.stderr


def test_missing_kube_context_points_at_kind_up(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    proc = subprocess.run(
        [str(DEV_CHECK), "context=kind-fastship"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": f"{real_tools()}:/usr/bin:/bin", "KUBECONFIG": str(kubeconfig)},
        check=False,
    )
    assert proc.returncode == 1
    assert "no context kind-fastship: create the cluster with `make kind-up`" in proc.stderr


@pytest.mark.parametrize("arg", ["helm", "helm=", "buildah=1.0", "realnode=down"])
def test_bad_arguments(tmp_path: Path, arg: str) -> None:
    (tmp_path / "bin").mkdir()
    proc = run(tmp_path / "bin", arg)
    assert proc.returncode == 2
    assert "dev-check:" in proc.stderr


def test_podman_too_old_names_the_version_needed(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    stand_in(tmp_path / "bin", "podman", "echo 3.4.4")
    proc = run(tmp_path / "bin", "podman=4.3.0")
    assert proc.returncode == 1
    assert "podman 3.4.4 is too old: version 4.3.0 or newer is needed" in proc.stderr
    assert "apt-get install podman" in proc.stderr


def test_podman_new_enough_passes(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    stand_in(tmp_path / "bin", "podman", "echo 4.3.1")
    proc = run(tmp_path / "bin", "podman=4.3.0")
    assert proc.returncode == 0, proc.stderr


def test_realnode_down_points_at_node_up(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    proc = subprocess.run(
        [str(DEV_CHECK), "realnode=up"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "FASTSHIP_NODE_WORKDIR": str(tmp_path)},
        check=False,
    )
    assert proc.returncode == 1
    if os.geteuid() == 0:
        assert f"no real node is up in {tmp_path}: start one with `sudo make node-up`" in (
            proc.stderr
        )
    else:
        assert "the real node needs root" in proc.stderr
