"""`make bench-load`: 60 seconds at 100 connections on a read/write mix of the item
endpoints, against one `python -m app serve` process (one uvicorn worker) on a real
PostgreSQL on loopback.

The mix, per request: 50 % GET /api/v1/items/{id}, 20 % GET /api/v1/items?limit=20,
20 % POST /api/v1/items, 10 % PATCH /api/v1/items/{id}, spread over 20 users with 20
items each, driven by wrk with a Lua script. The server's resident memory is sampled
every second. The run passes when no request failed (socket error or non-2xx) and the
RSS grew by less than 10 % from the 10th second to the end. Prints the figures and
writes them as JSON to bench/results/load.json. Options: --duration, --connections,
--set FASTSHIP_X=VALUE (server settings, repeatable).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.service import IMAGE_ENV
from tests.hardening.server import PASSWORD, hardening_server, sql
from tests.support.postgres import PostgresServer
from tests.support.server import AppServer

ROOT = Path(__file__).resolve().parents[1]
USERS = 20
ITEMS_PER_USER = 20
RSS_GROWTH_LIMIT = 0.10

LUA = """
local tokens = {%(tokens)s}
local items = {%(items)s}
local n = 0
math.randomseed(%(seed)d)

request = function()
  n = n + 1
  local u = math.random(#tokens)
  local headers = {["Authorization"] = "Bearer " .. tokens[u],
                   ["Content-Type"] = "application/json"}
  local own = items[u]
  local r = math.random(100)
  if r <= 50 then
    return wrk.format("GET", "/api/v1/items/" .. own[math.random(#own)], headers)
  elseif r <= 70 then
    return wrk.format("GET", "/api/v1/items?limit=20", headers)
  elseif r <= 90 then
    local body = '{"name":"bench ' .. n .. '","price":"' .. (n %% 1000) .. '.50","tags":["load"]}'
    return wrk.format("POST", "/api/v1/items", headers, body)
  else
    local body = '{"description":"changed ' .. n .. '"}'
    return wrk.format("PATCH", "/api/v1/items/" .. own[math.random(#own)], headers, body)
  end
end
"""


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def _seed(server: AppServer) -> tuple[list[str], list[list[str]]]:
    """USERS accounts with ITEMS_PER_USER items each: their tokens and item ids."""
    tokens: list[str] = []
    items: list[list[str]] = []
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        for _ in range(USERS):
            email = f"load{uuid.uuid4().hex[:10]}@example.com"
            client.post("/api/v1/users/signup", json={"email": email, "password": PASSWORD})
            form = {"username": email, "password": PASSWORD}
            login = client.post("/api/v1/auth/token", data=form)
            token = login.json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            ids = []
            for i in range(ITEMS_PER_USER):
                created = client.post(
                    "/api/v1/items", json={"name": f"seed {i}", "price": "9.99"}, headers=headers
                )
                created.raise_for_status()
                ids.append(created.json()["id"])
            tokens.append(token)
            items.append(ids)
    return tokens, items


def _lua(tokens: list[str], items: list[list[str]]) -> str:
    quoted = ", ".join(f'"{t}"' for t in tokens)
    nested = ", ".join("{" + ", ".join(f'"{i}"' for i in ids) + "}" for ids in items)
    return LUA % {"tokens": quoted, "items": nested, "seed": int(time.time())}


def _parse(out: str) -> dict[str, Any]:
    def find(pattern: str) -> str:
        match = re.search(pattern, out)
        if match is None:
            raise RuntimeError(f"wrk output without {pattern!r}:\n{out}")
        return match.group(1)

    errors = {"non_2xx": 0, "connect": 0, "read": 0, "write": 0, "timeout": 0}
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors["non_2xx"] = int(match.group(1))
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    ):
        for key, value in zip(("connect", "read", "write", "timeout"), match.groups(), strict=True):
            errors[key] = int(value)
    return {
        "requests": int(find(r"(\d+) requests in")),
        "rps": float(find(r"Requests/sec:\s+([\d.]+)")),
        "p50_ms": _ms(find(r"50%\s+(\S+)")),
        "p90_ms": _ms(find(r"90%\s+(\S+)")),
        "p99_ms": _ms(find(r"99%\s+(\S+)")),
        "max_ms": _ms(find(r"Latency\s+\S+\s+\S+\s+(\S+)")),
        "errors": errors,
    }


def run(duration: int, connections: int, settings: dict[str, str] | None = None) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install wrk (listed in .ci/packages.txt)")
    root = Path(tempfile.mkdtemp(prefix="fastship-load-"))
    # PostgresServer hands its directory to the postgres user when run as root.
    pg = PostgresServer.temporary("fastship-load-pg-")
    server: AppServer | None = None
    try:
        from app.core import schema
        from app.core.config import Settings

        url = pg.url(pg.create_database("load"))
        schema.migrate(Settings(database_url=url))
        server = hardening_server(
            url,
            root / "server.log",
            FASTSHIP_ACCESS_LOG="false",
            FASTSHIP_LOG_LEVEL="WARNING",
            **IMAGE_ENV,
            **(settings or {}),
        ).start()
        tokens, items = _seed(server)
        script = root / "mix.lua"
        script.write_text(_lua(tokens, items))

        samples: list[tuple[float, int]] = []
        done = threading.Event()

        def sample() -> None:
            started = time.monotonic()
            while not done.wait(1.0):
                assert server is not None
                samples.append((time.monotonic() - started, server.rss_kib()))

        sampler = threading.Thread(target=sample, daemon=True)
        cmd = [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(script),
            server.base_url,
        ]
        print(f"running: {' '.join(cmd)}", file=sys.stderr, flush=True)
        sampler.start()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        done.set()
        sampler.join()

        result = _parse(out)
        at_10s = next(rss for t, rss in samples if t >= 10.0)
        at_end = samples[-1][1]
        rows = sql(url, "SELECT count(*) AS n FROM items")[0].n
        server_errors = [line for line in server.log_text().splitlines() if '"error"' in line]
        result.update(
            duration_s=duration,
            connections=connections,
            settings=settings or {},
            rss_kib_at_10s=at_10s,
            rss_kib_at_end=at_end,
            rss_growth=round((at_end - at_10s) / at_10s, 4),
            rss_samples_kib=[rss for _, rss in samples],
            items_in_database=rows,
            server_error_lines=len(server_errors),
            wrk_output=out,
        )
        return result
    finally:
        if server is not None:
            server.stop()
        pg.discard()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=60, help="seconds (default 60)")
    parser.add_argument("--connections", type=int, default=100, help="(default 100)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FASTSHIP_X=VALUE",
        help="a server setting for this run (repeatable), e.g. FASTSHIP_DB_POOL_SIZE=20",
    )
    args = parser.parse_args(argv)
    settings = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("FASTSHIP_"):
            parser.error(f"--set expects FASTSHIP_NAME=VALUE, got {item!r}")
        settings[name] = value
    if args.duration < 15:
        parser.error("--duration must be at least 15 s: RSS growth is measured from the 10th")

    result = run(args.duration, args.connections, settings)
    failed = sum(result["errors"].values())
    growth = result["rss_growth"]
    print(
        f"\n{result['requests']} requests in {args.duration} s at {args.connections} "
        f"connections: {result['rps']:.0f} req/s\n"
        f"latency p50 {result['p50_ms']:.1f} ms, p90 {result['p90_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms\n"
        f"errors: {failed} ({result['errors']})\n"
        f"server RSS {result['rss_kib_at_10s'] / 1024:.1f} MiB at 10 s -> "
        f"{result['rss_kib_at_end'] / 1024:.1f} MiB at the end ({growth:+.1%})\n"
        f"items in the database: {result['items_in_database']}"
    )
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "load.json").write_text(json.dumps(result, indent=2) + "\n")
    problems = []
    if failed:
        problems.append(f"{failed} requests failed")
    if result["server_error_lines"]:
        problems.append(f"{result['server_error_lines']} error lines in the server log")
    if growth >= RSS_GROWTH_LIMIT:
        problems.append(f"RSS grew {growth:.1%} (limit {RSS_GROWTH_LIMIT:.0%})")
    if problems:
        print("FAILED: " + "; ".join(problems), file=sys.stderr)
        return 1
    print("passed: no errors, RSS growth under 10 %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
