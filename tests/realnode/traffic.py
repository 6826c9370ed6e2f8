"""Traffic against the service on the real node, run inside the node's network namespace.

The tests start it with ``nsenter --net=...`` (``Node.run`` / ``Node.popen``), so that every
request goes to a ClusterIP through kube-proxy and never leaves the namespace.

    python -m tests.realnode.traffic crud URL
        sign up, log in, create, list, update and delete an item; print what happened as JSON
    python -m tests.realnode.traffic load URL --seconds S --workers W --out FILE [--token T]
        W writers create items (and read them back) until S seconds pass, SIGTERM arrives
        or 20,000 requests are done; FILE gets the acknowledged item ids and every failure
    python -m tests.realnode.traffic verify URL --token T IDS_FILE
        print the ids of IDS_FILE that the service no longer has
    python -m tests.realnode.traffic burn URL --seconds S --workers W
        CPU load: logins (argon2) and reads until S seconds pass
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

API = "/api/v1"
MAX_REQUESTS = 20_000
PASSWORD = "correct horse battery staple"


def new_user(client: httpx.Client) -> tuple[str, str]:
    """Sign up a fresh user and return (email, bearer token)."""
    email = f"u-{secrets.token_hex(6)}@example.com"
    response = client.post(f"{API}/users/signup", json={"email": email, "password": PASSWORD})
    response.raise_for_status()
    token = client.post(f"{API}/auth/token", data={"username": email, "password": PASSWORD})
    token.raise_for_status()
    return email, str(token.json()["access_token"])


def crud(url: str) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=15) as client:
        email, token = new_user(client)
        headers = {"authorization": f"Bearer {token}"}
        me = client.get(f"{API}/users/me", headers=headers).json()
        created = client.post(
            f"{API}/items", headers=headers, json={"name": "Cup", "price": "12.50", "tags": ["a"]}
        )
        item = created.json()
        listed = client.get(f"{API}/items", headers=headers, params={"q": "cup"}).json()
        updated = client.patch(f"{API}/items/{item['id']}", headers=headers, json={"price": "9.99"})
        deleted = client.delete(f"{API}/items/{item['id']}", headers=headers)
        gone = client.get(f"{API}/items/{item['id']}", headers=headers)
        return {
            "email": email,
            "me": me,
            "created": [created.status_code, item],
            "listed": listed,
            "updated": [updated.status_code, updated.json()],
            "deleted": deleted.status_code,
            "after_delete": gone.status_code,
        }


class Load:
    def __init__(self, url: str, token: str, seconds: float) -> None:
        self.url = url
        self.headers = {"authorization": f"Bearer {token}"}
        self.deadline = time.monotonic() + seconds
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked: list[str] = []
        self.failures: list[str] = []
        self.requests = 0
        self.first_ack = threading.Event()

    def _count(self) -> bool:
        with self.lock:
            self.requests += 1
            return self.requests <= MAX_REQUESTS

    def worker(self, n: int) -> None:
        # A fresh connection per request: each one is balanced by kube-proxy again, as
        # clients behind a Service see it when pods come and go.
        while not self.stop.is_set() and time.monotonic() < self.deadline and self._count():
            name = f"w{n}-{secrets.token_hex(4)}"
            try:
                response = httpx.post(
                    f"{self.url}{API}/items",
                    headers=self.headers,
                    json={"name": name, "price": "1.00"},
                    timeout=10,
                )
                if response.status_code == 201:
                    item_id = str(response.json()["id"])
                    with self.lock:
                        self.acked.append(item_id)
                        # One line per acknowledged write: the test follows progress by it.
                        print("acked", len(self.acked), flush=True)
                    self.first_ack.set()
                    check = httpx.get(
                        f"{self.url}{API}/items/{item_id}", headers=self.headers, timeout=10
                    )
                    if check.status_code != 200:
                        with self.lock:
                            self.failures.append(f"GET {item_id}: {check.status_code}")
                else:
                    with self.lock:
                        self.failures.append(f"POST: {response.status_code} {response.text[:200]}")
            except httpx.HTTPError as exc:
                with self.lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.02)


def load(url: str, seconds: float, workers: int, out: Path, token: str | None) -> int:
    if token is None:
        with httpx.Client(base_url=url, timeout=15) as client:
            _, token = new_user(client)
    state = Load(url, token, seconds)
    signal.signal(signal.SIGTERM, lambda *_: state.stop.set())
    threads = [threading.Thread(target=state.worker, args=(n,)) for n in range(workers)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = {
        "token": token,
        "seconds": round(time.monotonic() - started, 1),
        "requests": state.requests,
        "acked": state.acked,
        "failures": state.failures,
    }
    out.write_text(json.dumps(result))
    return 0


def verify(url: str, token: str, ids_file: Path) -> int:
    ids = json.loads(ids_file.read_text())["acked"]
    missing = []
    with httpx.Client(base_url=url, timeout=15, headers={"authorization": f"Bearer {token}"}) as c:
        for item_id in ids:
            if c.get(f"{API}/items/{item_id}").status_code != 200:
                missing.append(item_id)
    print(json.dumps({"checked": len(ids), "missing": missing}))
    return 0


def burn(url: str, seconds: float, workers: int) -> int:
    with httpx.Client(base_url=url, timeout=15) as client:
        email, _ = new_user(client)
    deadline = time.monotonic() + seconds
    count = [0]

    def work() -> None:
        with httpx.Client(base_url=url, timeout=15) as c:
            while time.monotonic() < deadline and count[0] < MAX_REQUESTS:
                count[0] += 1
                try:
                    c.post(f"{API}/auth/token", data={"username": email, "password": PASSWORD})
                except httpx.HTTPError:
                    time.sleep(0.1)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"requests": count[0]}))
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.realnode.traffic")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("crud")
    p.add_argument("url")
    p = sub.add_parser("load")
    p.add_argument("url")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--token")
    p = sub.add_parser("verify")
    p.add_argument("url")
    p.add_argument("--token", required=True)
    p.add_argument("ids_file", type=Path)
    p = sub.add_parser("burn")
    p.add_argument("url")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--workers", type=int, default=4)
    args = parser.parse_args(argv)
    if args.command == "crud":
        print(json.dumps(crud(args.url)))
        return 0
    if args.command == "load":
        return load(args.url, min(args.seconds, 600), args.workers, args.out, args.token)
    if args.command == "verify":
        return verify(args.url, args.token, args.ids_file)
    return burn(args.url, min(args.seconds, 600), args.workers)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
