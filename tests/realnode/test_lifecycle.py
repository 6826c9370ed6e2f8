"""The real node leaves nothing behind: after `down`, and after a start interrupted by SIGTERM.

Each test starts a node of its own (a second one beside the session's, in another network
namespace) and checks the machine afterwards: no network namespace, process, mount or
cgroup of that node, the machine's iptables rules and kernel settings as they were.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.realnode.conftest import REALNODE, Node, script
from tests.support.kube import tools_bin
from tests.support.waiting import wait_until

SYSCTLS = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")


def netns_names() -> list[str]:
    run = Path("/run/netns")
    return sorted(p.name for p in run.iterdir()) if run.is_dir() else []


def machine_state() -> dict[str, object]:
    host_rules = subprocess.run(
        ["iptables-save"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    return {
        "netns": netns_names(),
        "sysctls": {s: Path("/proc/sys", s).read_text().strip() for s in SYSCTLS},
        "iptables": [r for r in host_rules if not r.startswith("#")],
        "dirs": {d: Path(d).is_dir() for d in ("/var/lib/kubelet", "/var/log/containers")},
    }


def cgroup_of(workdir: Path) -> str:
    """The parent cgroup of the node's pods (tools/realnode.sh names it by its workdir)."""
    return "fastship-node-" + hashlib.sha256(str(workdir).encode()).hexdigest()[:8]


def leftovers(workdir: Path) -> dict[str, list[str]]:
    """What of the node at `workdir` is still on the machine."""
    key = str(workdir)
    processes = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = entry.name
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if key in cmdline:
            processes.append(f"{pid}: {cmdline[:200]}")
    mounts = [line for line in Path("/proc/mounts").read_text().splitlines() if key in line]
    cgroups = [str(d) for d in Path("/sys/fs/cgroup").glob(f"*/{cgroup_of(workdir)}")]
    return {"processes": processes, "mounts": mounts, "cgroups": cgroups}


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "node"
    path.mkdir()
    try:
        yield path
    finally:
        script(path, "down")


def netns_of(workdir: Path) -> str:
    return script(workdir, "status").stdout.split("netns: ", 1)[-1].split()[0]


def test_down_leaves_nothing_behind(node: Node, workdir: Path) -> None:
    before = machine_state()
    up = script(workdir, "up")
    assert up.returncode == 0, up.stderr[-3000:]
    netns = netns_of(workdir)
    assert netns in netns_names()
    running = leftovers(workdir)
    assert running["processes"]  # the node runs, its pods' cgroups exist ...
    assert running["cgroups"]

    down = script(workdir, "down")
    assert down.returncode == 0, down.stderr
    assert leftovers(workdir) == {"processes": [], "mounts": [], "cgroups": []}
    assert netns not in netns_names()
    assert machine_state() == before


def test_an_interrupted_start_leaves_nothing_behind(node: Node, workdir: Path) -> None:
    before = machine_state()
    env = dict(os.environ, FASTSHIP_NODE_WORKDIR=str(workdir), TOOLS_BIN=str(tools_bin()))
    proc = subprocess.Popen(
        ["bash", str(REALNODE), "up"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Interrupt it once the node's daemons are starting: the most it can leave behind.
        wait_until(
            lambda: (workdir / "node.pid").exists() or proc.poll() is not None,
            timeout=180, interval=0.2, what="the node's daemons to start",
        )  # fmt: skip
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "tearing down" in err
    assert leftovers(workdir) == {"processes": [], "mounts": [], "cgroups": []}
    assert machine_state() == before
