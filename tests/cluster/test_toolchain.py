"""The pinned toolchain: versions as pinned, warm builds rebuild nothing, Go errors are clear."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from tests.support.kube import REPO_ROOT, Kube, tools_bin

BUILD_SCRIPT = REPO_ROOT / "tools" / "build-tools.sh"
TOOLS = (
    "helm",
    "kwok",
    "kwokctl",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "metrics-server",
)


def pinned() -> dict[str, str]:
    versions: dict[str, str] = {}
    for line in (REPO_ROOT / "tools" / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            versions[key] = value
    return versions


def run(*cmd: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_binaries_report_pinned_versions() -> None:
    v = pinned()
    bin_dir = tools_bin()
    k8s = v["KUBERNETES_VERSION"]
    for tool in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        out = run(bin_dir / tool, "--version")
        assert out.stdout.strip() == f"Kubernetes {k8s}", (tool, out.stdout, out.stderr)
    client = json.loads(run(bin_dir / "kubectl", "version", "--client", "-o", "json").stdout)
    assert client["clientVersion"]["gitVersion"] == k8s
    assert (
        run(bin_dir / "helm", "version", "--template", "{{.Version}}").stdout == v["HELM_VERSION"]
    )
    assert (
        f"etcd Version: {v['ETCD_VERSION'].lstrip('v')}"
        in run(bin_dir / "etcd", "--version").stdout
    )
    assert v["KWOK_VERSION"].lstrip("v") in run(bin_dir / "kwokctl", "--version").stdout
    assert v["METRICS_SERVER_VERSION"] in run(bin_dir / "metrics-server", "--version").stdout


def test_server_reports_release_version(kube: Kube) -> None:
    major, minor = kube.version.split(".")
    assert major == "1"
    assert minor.isdigit()
    if kube.local:
        k8s = pinned()["KUBERNETES_VERSION"]
        assert kube.git_version == k8s
        assert k8s.startswith(f"v{kube.version}.")


def test_warm_build_rebuilds_nothing() -> None:
    start = time.monotonic()
    out = run("bash", BUILD_SCRIPT)
    took = time.monotonic() - start
    assert out.returncode == 0, out.stdout + out.stderr
    for tool in TOOLS:
        assert f"ok    {tool} " in out.stdout, out.stdout
    # Every tool of the build (the node's and the test tools' too) comes from the cache.
    assert out.stdout.count("(cached)") == out.stdout.count("ok    "), out.stdout
    assert "build " not in out.stdout
    assert took < 30, f"warm run took {took:.1f}s"


def _env_without_go(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["FASTSHIP_CACHE"] = str(tmp_path / "cache")  # cold: forces the Go check
    env["TOOLS_BIN"] = str(tmp_path / "bin")
    return env


def test_missing_go_gets_one_clear_message(tmp_path: Path) -> None:
    env = _env_without_go(tmp_path)
    env["PATH"] = "/usr/bin:/bin"  # bash and coreutils, no go
    if any((Path(d) / "go").exists() for d in env["PATH"].split(":")):
        fake = tmp_path / "nogo"
        fake.mkdir()
        for tool in ("bash", "date", "dirname", "mkdir", "flock", "cat"):
            (fake / tool).symlink_to(
                f"/usr/bin/{tool}" if Path(f"/usr/bin/{tool}").exists() else f"/bin/{tool}"
            )
        env["PATH"] = str(fake)
    out = run("/bin/bash", BUILD_SCRIPT, "helm", env=env)
    assert out.returncode != 0
    assert "no `go` is on PATH" in out.stderr
    assert f"Install Go {pinned()['GO_MIN_VERSION']}+" in out.stderr


def test_old_go_gets_one_clear_message(tmp_path: Path) -> None:
    env = _env_without_go(tmp_path)
    fake = tmp_path / "oldgo"
    fake.mkdir()
    (fake / "go").write_text('#!/bin/sh\n[ "$1 $2" = "env GOVERSION" ] && echo go1.21.3\n')
    (fake / "go").chmod(0o755)
    env["PATH"] = f"{fake}:{env['PATH']}"
    out = run("bash", BUILD_SCRIPT, "helm", env=env)
    assert out.returncode != 0
    assert "found Go 1.21.3" in out.stderr
    assert f"Go {pinned()['GO_MIN_VERSION']} or newer is needed" in out.stderr
