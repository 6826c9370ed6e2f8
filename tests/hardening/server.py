"""The hardening tests' server: `python -m app serve` (tests/support/server.py) on a
real Postgres database with the cheapest argon2 cost production allows, and the SQL and
account helpers of the tests that use it (the fault, log and web tests, the load
benchmark)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from tests.support.server import AppServer

SIGNING_KEY = "hardening-signing-key-" + "k" * 40
PASSWORD = "correct horse battery"

# The cheapest argon2id production allows (OWASP's minimum), not the test-only cost of
# tests/app: the contention tests load the service with logins as costly as deployed.
FAST_HASHING_ENV = {
    "FASTSHIP_PASSWORD_HASH_MEMORY_KIB": "19456",
    "FASTSHIP_PASSWORD_HASH_TIME_COST": "2",
    "FASTSHIP_PASSWORD_HASH_PARALLELISM": "1",
}


def hardening_env(database_url: str, **env: str) -> dict[str, str]:
    """The settings of a hardening server on ``database_url``, then ``env``."""
    return {
        "FASTSHIP_DATABASE_URL": database_url,
        "FASTSHIP_ENVIRONMENT": "test",
        "FASTSHIP_JWT_SECRET_KEY": SIGNING_KEY,
        "FASTSHIP_HOST": "127.0.0.1",
        **FAST_HASHING_ENV,
        **env,
    }


def hardening_server(database_url: str, log_path: Path, **env: str) -> AppServer:
    """A hardening server, not started yet."""
    return AppServer(hardening_env(database_url, **env), log_path)


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
