"""`make bench`: fastship's HTTP throughput and latency, side by side with a ceiling.

One uvicorn worker (asyncio, httptools) for fastship on a real PostgreSQL on loopback
with 100 items seeded, and the pure-ASGI ceiling app (bench/ceiling.py) under the
same uvicorn settings; `wrk -t2 -c50 -d15s` against each endpoint, one after the
other, in the same run. Prints a Markdown table and writes it with the raw numbers
to bench/results/. Options: --duration, --connections, --contention (only the rows of
DB-backed requests alone and during a login burst), --loops ROUNDS (only the event
loops compared, interleaved: see ``compare_loops``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.postgres import PostgresServer
from tests.support.server import AppServer
from tests.support.waiting import free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
KEY = "benchmark-signing-key-" + "b" * 32
# The allocator setting of the image (Dockerfile), so that the worker's RSS is the pod's.
IMAGE_ENV = {"MALLOC_MMAP_THRESHOLD_": "1048576"}
# The ceiling runs on the event loop that `serve` uses: asyncio's.
UVICORN = [
    "--loop",
    "asyncio",
    "--http",
    "httptools",
    "--no-access-log",
    "--log-level",
    "warning",
]


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if match is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}[unit]


def wrk(
    name: str,
    url: str,
    *,
    threads: int,
    connections: int,
    duration: int,
    script: str | None = None,
    refusals_expected: bool = False,
) -> Result:
    """One wrk run. ``refusals_expected``: 4xx answers are what the run asks for (wrong
    passwords), so only socket errors and 5xx count as errors."""
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "--timeout",
        "10s",
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script or "")
    if script:
        cmd += ["-s", lua.name]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    if "99%" not in out:
        raise RuntimeError(f"wrk gave no latency distribution for {name}:\n{out}")
    Path(lua.name).unlink()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    # Rows of the "Latency Distribution" table; "50%" alone could match a "72.50%"
    # in the thread statistics above it.
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)\s*$", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)\s*$", out, re.M).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) and not refusals_expected:
        errors += int(m.group(1))
    if refusals_expected and (m := re.search(r"5xx responses: (\d+)", out)):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(g) for g in m.groups())
    return Result(name, rps, p50, p99, errors, requests)


def lua_request(method: str, headers: dict[str, str], body: str = "") -> str:
    lines = [f'wrk.method = "{method}"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    if body:
        lines.append(f"wrk.body = {json.dumps(body)}")
    return "\n".join(lines) + "\n"


# Logins for a new unknown email each time: every one costs a full argon2 check and
# none is ever locked out. Counts 5xx answers, which wrk does not tell apart.
UNKNOWN_EMAIL_LOGINS = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
local n = 0
local server_errors = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil,
    "username=nobody-" .. n .. "-" .. math.random(1, 1000000000) ..
    "%40example.com&password=a+guess")
end
response = function(status, headers, body)
  if status >= 500 then server_errors = server_errors + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("5xx responses: %d\\n", server_errors))
end
"""


def measure_revocation(replica_a: str, replica_b: str, rounds: int = 10) -> list[float]:
    """Milliseconds from a password change's 204 on ``replica_a`` until ``replica_b``
    refuses a token issued before it, ``rounds`` times."""
    with (
        httpx.Client(base_url=replica_a, timeout=30) as a,
        httpx.Client(base_url=replica_b, timeout=30) as b,
    ):
        email, password = "revocation@example.com", "revocation password 0"
        a.post(
            "/api/v1/users/signup", json={"email": email, "password": password}
        ).raise_for_status()
        delays = []
        for n in range(rounds):
            token = a.post(
                "/api/v1/auth/token", data={"username": email, "password": password}
            ).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            for _ in range(20):  # replica B now has the account cached
                b.get("/api/v1/users/me", headers=auth).raise_for_status()
            new = f"revocation password {n + 1}"
            a.post(
                "/api/v1/users/me/password",
                json={"current_password": password, "new_password": new},
                headers=auth,
            ).raise_for_status()
            changed = time.monotonic()
            password = new
            while b.get("/api/v1/users/me", headers=auth).status_code == 200:
                if time.monotonic() - changed > 30:
                    raise RuntimeError("replica B accepted a revoked token for 30 s")
                time.sleep(0.005)
            delays.append((time.monotonic() - changed) * 1000)
            time.sleep(0.3)  # start the next round at another point of the cache's TTL
    return delays


def wait_http(url: str, proc: subprocess.Popen[bytes]) -> None:
    """Until ``url`` answers 200; fails at once if the process behind it exits."""

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the server behind {url} exited with {proc.returncode}")
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(answers, timeout=60, interval=0.005, what=url)


def wait_ceiling(port: int, proc: subprocess.Popen[bytes]) -> None:
    wait_http(f"http://127.0.0.1:{port}/health", proc)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_fastship(env: dict[str, str], log: Path, port: int | None = None) -> AppServer:
    """`python -m app serve`, ready: the first 200 on /readyz, polled every 5 ms."""
    return AppServer(env, log, port=port).start(interval=0.005)


def start_ceiling(port: int, options: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.ceiling:app", "--port", str(port), *options],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# Event loops compared by --loops: uvicorn's --loop value for each. uvloop is not a
# dependency: `pip install uvloop` into the venv to include it.
LOOPS = {"asyncio": "asyncio", "uvloop": "uvloop"}


def start_uvicorn(
    target: str, port: int, loop: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``target`` under uvicorn on ``loop``, with the options of UVICORN otherwise."""
    factory = ["--factory"] if target.endswith("create_app") else []
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            target,
            *factory,
            "--port",
            str(port),
            "--loop",
            loop,
            *UVICORN[2:],
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def outer_environ() -> dict[str, str]:
    """This process's environment without fastship's settings or glibc's allocator ones."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("FASTSHIP_", "MALLOC_"))}


def production_env(database_url: str, *, allocator: bool = True) -> dict[str, str]:
    """A production worker's settings on ``database_url`` (and the image's allocator
    setting, unless ``allocator`` is False), once `migrate` has run there."""
    env = {
        "FASTSHIP_DATABASE_URL": database_url,
        "FASTSHIP_ENVIRONMENT": "production",
        "FASTSHIP_JWT_SECRET_KEY": KEY,
        "FASTSHIP_LOG_LEVEL": "WARNING",
        **(IMAGE_ENV if allocator else {}),
    }
    subprocess.run(
        [sys.executable, "-m", "app", "migrate", "--termination-log", os.devnull],
        env={**outer_environ(), **env},
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    return env


def seed(base: str) -> tuple[dict[str, str], list[str]]:
    """A user with 100 items: its Authorization header and the items' ids."""
    with httpx.Client(base_url=base, timeout=30) as client:
        client.post(
            "/api/v1/users/signup",
            json={"email": "bench@example.com", "password": "benchmark password"},
        ).raise_for_status()
        token = client.post(
            "/api/v1/auth/token",
            data={"username": "bench@example.com", "password": "benchmark password"},
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        ids = [
            client.post(
                "/api/v1/items",
                headers=auth,
                json={
                    "name": f"item {i}",
                    "description": "a benchmark item with a short description",
                    "price": f"{i}.99",
                    "tags": ["bench", "load"],
                },
            ).json()["id"]
            for i in range(100)
        ]
    return auth, ids


def compare_loops(rounds: int, duration: int, connections: int) -> int:
    """The ceiling's /items and fastship's list and get-one on each event loop of LOOPS,
    interleaved: every round starts both apps afresh on each loop in turn (the order
    rotates from round to round) and runs the three wrk runs against them."""
    loops = {name: loop for name, loop in LOOPS.items() if importlib.util.find_spec(loop)}
    if len(loops) < len(LOOPS):
        print(f"not installed, left out: {', '.join(sorted(set(LOOPS) - set(loops)))}")
    loads = [os.getloadavg()]
    pg = PostgresServer.temporary("fastship-bench-pg-")
    procs: list[subprocess.Popen[bytes]] = []
    results: list[tuple[int, str, Result]] = []
    try:
        db = pg.create_database("bench")
        env = {**outer_environ(), **production_env(pg.url(db))}
        port, ceiling_port = free_port(), free_port()
        base, ceil = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ceiling_port}"
        server = start_uvicorn("app.main:create_app", port, "asyncio", env)
        procs.append(server)
        wait_http(base + "/readyz", server)
        auth, ids = seed(base)
        server.terminate()
        server.wait(30)
        get_auth = lua_request("GET", auth)
        names = list(loops)
        for n in range(rounds):
            for name in names[n % len(names) :] + names[: n % len(names)]:
                ceiling = start_uvicorn("bench.ceiling:app", ceiling_port, loops[name])
                server = start_uvicorn("app.main:create_app", port, loops[name], env)
                procs += [ceiling, server]
                wait_http(ceil + "/health", ceiling)
                wait_http(base + "/readyz", server)
                for run, url, script in [
                    ("ceiling /items", ceil + "/items", None),
                    ("list items (limit 100)", base + "/api/v1/items?limit=100", get_auth),
                    ("get one item", f"{base}/api/v1/items/{ids[50]}", get_auth),
                ]:
                    r = wrk(
                        run,
                        url,
                        threads=2,
                        connections=connections,
                        duration=duration,
                        script=script,
                    )
                    results.append((n + 1, name, r))
                    print(
                        f"round {n + 1} {name}: {run}: {r.rps:,.0f} req/s, "
                        f"p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms, errors {r.errors}",
                        flush=True,
                    )
                for proc in (ceiling, server):
                    proc.terminate()
                    proc.wait(30)
            loads.append(os.getloadavg())
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        pg.discard()

    rows = [
        "| run | loop | req/s (median) | p99 ms (median) | p99 ms (each round) "
        "| req/s ratio to asyncio | errors |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    runs = list(dict.fromkeys(r.name for _, _, r in results))
    for run in runs:
        med = {}
        for name in loops:
            mine = [r for _, loop, r in results if loop == name and r.name == run]
            med[name] = statistics.median(r.rps for r in mine)
        for name in loops:
            mine = [r for _, loop, r in results if loop == name and r.name == run]
            rows.append(
                f"| {run} | {name} | {med[name]:,.0f} | "
                f"{statistics.median(r.p99_ms for r in mine):.1f} | "
                + ", ".join(f"{r.p99_ms:.0f}" for r in mine)
                + f" | {med[name] / med['asyncio']:.2f} | {sum(r.errors for r in mine)} |"
            )
    rows.append("")
    rows.append(
        "load average (1 min) at the start and after each round: "
        + ", ".join(f"{load[0]:.1f}" for load in loads)
    )
    table = "\n".join(rows)
    print(f"\n{rounds} rounds, wrk -t2 -c{connections} -d{duration}s, {os.cpu_count()} cores\n")
    print(table)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (out / f"loops-{stamp}.json").write_text(
        json.dumps(
            {
                "results": [{"round": n, "loop": loop, **asdict(r)} for n, loop, r in results],
                "loadavg": loads,
            },
            indent=2,
        )
    )
    (out / f"loops-{stamp}.md").write_text(table + "\n")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument(
        "--contention",
        action="store_true",
        help="only the rows of DB-backed requests alone and during a login burst",
    )
    parser.add_argument(
        "--loops",
        type=int,
        metavar="ROUNDS",
        help="only compare the event loops, interleaved, this many rounds",
    )
    args = parser.parse_args()
    full = not args.contention
    if not shutil.which("wrk"):
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2
    d, c = args.duration, args.connections
    if args.loops:
        return compare_loops(args.loops, d, c)
    results: list[Result] = []
    extra: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="fastship-bench-"))
    pg = PostgresServer.temporary("fastship-bench-pg-")
    procs: list[subprocess.Popen[bytes]] = []
    servers: list[AppServer] = []
    try:
        db = pg.create_database("bench")
        env = production_env(pg.url(db))

        # Time to ready: process start to the first 200 on /readyz, three starts.
        starts = []
        for _ in range(3 if full else 0):
            started = start_fastship(env, work / "start.log")
            starts.append(started.ready_seconds)
            started.terminate()
        if starts:
            extra["start_to_ready_s"] = {"median": statistics.median(starts), "all": starts}

        ceiling_port = free_port()
        ceiling = start_ceiling(ceiling_port, UVICORN)
        procs.append(ceiling)
        server = start_fastship(env, work / "server.log")
        servers.append(server)
        base = server.base_url
        wait_ceiling(ceiling_port, ceiling)

        auth, ids = seed(base)

        ceil = f"http://127.0.0.1:{ceiling_port}"
        get_auth = lua_request("GET", auth)
        create = lua_request(
            "POST",
            {**auth, "Content-Type": "application/json"},
            json.dumps({"name": "new", "price": "1.00", "tags": ["x"]}),
        )
        # Create runs last: it grows the table that the list reads.
        runs: list[tuple[str, str, str | None]] = [
            ("ceiling /health", ceil + "/health", None),
            ("ceiling /items", ceil + "/items", None),
            ("/healthz", base + "/healthz", None),
            ("list items (limit 100)", base + "/api/v1/items?limit=100", get_auth),
            ("get one item", f"{base}/api/v1/items/{ids[50]}", get_auth),
            ("create item", base + "/api/v1/items", create),
        ]
        rss_by_run = extra["worker_rss_mb_by_run"] = {"ready": server.rss_kib() / 1024}
        for name, url, script in runs if full else []:
            results.append(wrk(name, url, threads=2, connections=c, duration=d, script=script))
            if not name.startswith("ceiling"):
                rss_by_run[name] = server.rss_kib() / 1024
        if full:
            # Login alone at 10 connections, then get-one while login keeps that load up.
            login = lua_request(
                "POST",
                {"Content-Type": "application/x-www-form-urlencoded"},
                "username=bench%40example.com&password=benchmark+password",
            )
            results.append(
                wrk(
                    "login (10 connections)",
                    base + "/api/v1/auth/token",
                    threads=1,
                    connections=10,
                    duration=d,
                    script=login,
                )
            )
            under: dict[str, Result] = {}
            background = threading.Thread(
                target=lambda: under.setdefault(
                    "login",
                    wrk(
                        "login during get-one",
                        base + "/api/v1/auth/token",
                        threads=1,
                        connections=10,
                        duration=d,
                        script=login,
                    ),
                )
            )
            background.start()
            time.sleep(1)
            results.append(
                wrk(
                    "get one item while login loaded",
                    f"{base}/api/v1/items/{ids[50]}",
                    threads=1,
                    connections=10,
                    duration=d - 2,
                    script=lua_request("GET", auth),
                )
            )
            background.join()
            results.append(under["login"])

        # DB-backed requests alone, then during a burst of logins for unknown emails on
        # 30 connections: a create (an INSERT) and GET /users/me (the account's row,
        # read through a session on every request: never cached).
        me = f"{base}/api/v1/users/me"
        contention = [
            ("create item", base + "/api/v1/items", create),
            ("read /users/me", me, get_auth),
        ]
        for name, url, script in contention:
            results.append(
                wrk(f"{name} alone", url, threads=1, connections=10, duration=d, script=script)
            )
        burst: dict[str, Result] = {}
        background = threading.Thread(
            target=lambda: burst.setdefault(
                "login",
                wrk(
                    "login burst (30 connections, unknown emails)",
                    base + "/api/v1/auth/token",
                    threads=1,
                    connections=30,
                    duration=2 * d + 3,
                    script=UNKNOWN_EMAIL_LOGINS,
                    refusals_expected=True,
                ),
            )
        )
        background.start()
        time.sleep(1)
        for name, url, script in contention:
            results.append(
                wrk(
                    f"{name} during the login burst",
                    url,
                    threads=1,
                    connections=10,
                    duration=d,
                    script=script,
                )
            )
        background.join()
        results.append(burst["login"])
        extra["worker_rss_mb_after_run"] = server.rss_kib() / 1024

        if full:
            # Two replicas and no Redis, as the chart installs by default: from a password
            # change's answer on one replica to the first 401 for an older token on the
            # other, which polls with it every 5 ms.
            replica_b = start_fastship(env, work / "replica-b.log")
            servers.append(replica_b)
            extra["revocation_ms"] = measure_revocation(base, replica_b.base_url)
            replica_b.terminate()

    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
        for started in servers:
            started.stop(timeout=30)
        pg.discard()
        shutil.rmtree(work, ignore_errors=True)

    by = {r.name: r for r in results}
    targets = {
        "/healthz": ("ceiling /health", 0.20, None),
        "list items (limit 100)": ("ceiling /items", 0.10, 100.0),
        "get one item": ("ceiling /health", 0.05, 50.0),
        "create item": ("ceiling /health", 0.03, None),
        "get one item while login loaded": (None, None, 100.0),
        "create item during the login burst": ("create item alone", 0.5, 100.0),
        "read /users/me during the login burst": ("read /users/me alone", 0.5, 100.0),
    }
    rows = [
        "| run | req/s | p50 ms | p99 ms | errors | ratio to ceiling | target | verdict |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    verdicts = []
    for r in results:
        ratio_text, target_text, ok = "", "", True
        if r.name in targets:
            ref, min_ratio, max_p99 = targets[r.name]
            parts = []
            if ref:
                ratio = r.rps / by[ref].rps
                ratio_text = f"{ratio:.3f} of {ref}"
                if min_ratio is not None:
                    parts.append(f"≥ {min_ratio}")
                    ok &= ratio >= min_ratio
            if max_p99:
                parts.append(f"p99 ≤ {max_p99:g} ms")
                ok &= r.p99_ms <= max_p99
            target_text = ", ".join(parts)
        ok &= r.errors == 0
        verdict = "ok" if ok else "MISSED"
        verdicts.append(ok)
        cells = [r.name, f"{r.rps:,.0f}", f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}", str(r.errors)]
        rows.append("| " + " | ".join([*cells, ratio_text, target_text, verdict]) + " |")
    rows.append("")
    rss = extra["worker_rss_mb_after_run"]
    rss_ok = "ok" if rss <= 120 else "MISSED"
    rows.append(f"- worker RSS after the run: {rss:.0f} MB (target ≤ 120 MB): {rss_ok}")
    steps = ", ".join(f"{k} {v:.0f}" for k, v in extra["worker_rss_mb_by_run"].items())
    rows.append(f"- worker RSS in MB as the run went: {steps}")
    if "start_to_ready_s" in extra:
        start = extra["start_to_ready_s"]["median"]
        start_ok = "ok" if start <= 1.0 else "MISSED"
        rows.append(
            f"- process start to first 200 on /readyz: {start:.2f} s, median of 3 "
            f"(target ≤ 1.0 s): {start_ok}"
        )
    if "revocation_ms" in extra:
        revocation = extra["revocation_ms"]
        revocation_ok = "ok" if max(revocation) <= 1000 else "MISSED"
        rows.append(
            f"- two replicas, no Redis: password change on one to a refused older token "
            f"on the other: median {statistics.median(revocation):.0f} ms, max "
            f"{max(revocation):.0f} ms of {len(revocation)} (target ≤ 1000 ms): "
            f"{revocation_ok}"
        )
    table = "\n".join(rows)
    print(
        textwrap.dedent(f"""
        wrk -t2 -c{c} -d{d}s (login runs: -t1 -c10; alone/during the login burst: -t1 -c10,
        the burst -t1 -c30), one uvicorn worker, PostgreSQL on loopback,
        {os.cpu_count()} cores shared with the load generator.
    """)
    )
    print(table)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (out / f"service-{stamp}.json").write_text(
        json.dumps({"results": [asdict(r) for r in results], **extra}, indent=2)
    )
    (out / f"service-{stamp}.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
