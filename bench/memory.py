"""`python -m bench.memory`: the worker's RSS after concurrent argon2 logins, for each
way of setting glibc's mmap threshold, side by side.

Each argon2id check allocates its whole memory cost (19 MiB) and frees it. glibc
raises its mmap threshold when such a block is freed, so later blocks come from a
heap that stays resident. Variants, interleaved round by round:

- ``default``: glibc as it comes.
- ``mallopt``: ``mallopt(M_MMAP_THRESHOLD, 1 MiB)`` through ctypes as the process starts.
- ``env``: ``MALLOC_MMAP_THRESHOLD_=1048576`` in the environment (what the image sets).

Each round starts one fastship worker per variant on a real PostgreSQL on loopback,
sends LOGINS logins for unknown emails (a full argon2 check each) from CONCURRENCY
threads, and reads the worker's VmRSS when ready, right after the logins, and after
a second round of logins. Options: --rounds, --logins, --concurrency.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from bench.service import ROOT, outer_environ, production_env, rss_mb, wait_http
from tests.support.postgres import PostgresServer
from tests.support.waiting import free_port

M_MMAP_THRESHOLD = -3
# `python -m app serve` with mallopt applied first, as app/core/memory.py did.
MALLOPT_SERVE = (
    "import ctypes, sys\n"
    f"ctypes.CDLL(None).mallopt({M_MMAP_THRESHOLD}, 1 << 20)\n"
    "from app.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
VARIANTS = ("default", "mallopt", "env")


def start(variant: str, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    args = ["serve", "--port", str(port)]
    if variant == "mallopt":
        cmd = [sys.executable, "-c", MALLOPT_SERVE, *args]
    else:
        cmd = [sys.executable, "-m", "app", *args]
    if variant == "env":
        env = {**env, "MALLOC_MMAP_THRESHOLD_": "1048576"}
    return subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def logins(base: str, count: int, concurrency: int) -> None:
    # A new email each time: one email is locked after a few failures.
    run = uuid.uuid4().hex[:12]

    def one(n: int) -> int:
        response = httpx.post(
            base + "/api/v1/auth/token",
            data={"username": f"nobody-{run}-{n}@example.com", "password": "a guess"},
            timeout=120,
        )
        return response.status_code

    with ThreadPoolExecutor(concurrency) as pool:
        statuses = list(pool.map(one, range(count)))
    if set(statuses) != {401}:
        raise RuntimeError(f"logins answered {sorted(set(statuses))}, expected only 401")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--logins", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    loads = [os.getloadavg()]
    pg = PostgresServer.temporary("fastship-bench-pg-")
    procs: list[subprocess.Popen[bytes]] = []
    rows: list[tuple[str, float, float, float]] = []
    try:
        db = pg.create_database("bench")
        env = {**outer_environ(), **production_env(pg.url(db), allocator=False)}
        for n in range(args.rounds):
            order = VARIANTS[n % len(VARIANTS) :] + VARIANTS[: n % len(VARIANTS)]
            for variant in order:
                port = free_port()
                proc = start(variant, env, port)
                procs.append(proc)
                base = f"http://127.0.0.1:{port}"
                wait_http(base + "/readyz", proc)
                ready = rss_mb(proc.pid)
                logins(base, args.logins, args.concurrency)
                after = rss_mb(proc.pid)
                logins(base, args.logins, args.concurrency)
                again = rss_mb(proc.pid)
                rows.append((variant, ready, after, again))
                print(
                    f"round {n + 1} {variant}: RSS ready {ready:.1f} MB, after {args.logins} "
                    f"logins {after:.1f} MB, after {2 * args.logins} {again:.1f} MB",
                    flush=True,
                )
                proc.terminate()
                proc.wait(30)
            loads.append(os.getloadavg())
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        pg.discard()

    print(
        f"\n{args.rounds} rounds; {args.logins} logins for unknown emails from "
        f"{args.concurrency} threads, twice; worker RSS in MB, median (each round)\n"
    )
    print(f"| variant | ready | after {args.logins} logins | after {2 * args.logins} logins |")
    print("|---|---:|---:|---:|")
    for variant in VARIANTS:
        mine = [r for r in rows if r[0] == variant]
        cells = []
        for i in (1, 2, 3):
            values = [float(r[i]) for r in mine]
            each = ", ".join(f"{v:.0f}" for v in values)
            cells.append(f"{statistics.median(values):.1f} ({each})")
        print(f"| {variant} | " + " | ".join(cells) + " |")
    print(
        "\nload average (1 min) at the start and after each round: "
        + ", ".join(f"{load[0]:.1f}" for load in loads)
    )
    print(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
