"""The service as production runs it: `python -m app serve` in a subprocess, on a
loopback port, against a real Postgres database.

Used by the fault and log tests and by the load benchmark. Everything the server
writes (stdout and stderr) goes to a file, so a test can read every log line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from tests.support.waiting import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
SIGNING_KEY = "hardening-signing-key-" + "k" * 40
PASSWORD = "correct horse battery"

# The cheapest argon2id production allows (OWASP's minimum), not the test-only cost of
# tests/app: the contention tests load the service with logins as costly as deployed.
FAST_HASHING_ENV = {
    "FASTSHIP_PASSWORD_HASH_MEMORY_KIB": "19456",
    "FASTSHIP_PASSWORD_HASH_TIME_COST": "2",
    "FASTSHIP_PASSWORD_HASH_PARALLELISM": "1",
}


@dataclass
class Server:
    """One `python -m app serve` process."""

    database_url: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Server:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("FASTSHIP_")},
            "FASTSHIP_DATABASE_URL": self.database_url,
            "FASTSHIP_ENVIRONMENT": "test",
            "FASTSHIP_JWT_SECRET_KEY": SIGNING_KEY,
            "FASTSHIP_HOST": "127.0.0.1",
            "FASTSHIP_PORT": str(self.port),
            **FAST_HASHING_ENV,
            **self.env,
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app", "serve"],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode} before it was ready:\n"
                    + self.log_text()[-4000:]
                )
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server not ready after {timeout}s:\n" + self.log_text()[-4000:])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def rss_kib(self) -> int:
        """Resident memory of the server process, from /proc."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("VmRSS not found")

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, as Kubernetes sends it; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def sync_url(url: str) -> str:
    """A URL that the synchronous SQLAlchemy engine can use (psycopg 3)."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def sql(database_url: str, statement: str, **params: Any) -> list[Any]:
    engine = sa.create_engine(sync_url(database_url))
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(statement), params)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def signup_and_login(
    client: httpx.Client, database_url: str, *, admin: bool = False, password: str = PASSWORD
) -> tuple[dict[str, Any], dict[str, str]]:
    """A new account (promoted to admin with SQL when asked) and its bearer header."""
    email = f"h{uuid.uuid4().hex[:12]}@example.com"
    created = client.post("/api/v1/users/signup", json={"email": email, "password": password})
    assert created.status_code == 201, created.text
    user: dict[str, Any] = created.json()
    if admin:
        sql(database_url, "UPDATE users SET role = 'admin' WHERE id = :i", i=user["id"])
        user["role"] = "admin"
    token = client.post("/api/v1/auth/token", data={"username": email, "password": password})
    assert token.status_code == 200, token.text
    return user, {"Authorization": f"Bearer {token.json()['access_token']}"}
