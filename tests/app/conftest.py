"""Service tests: the app in-process (Starlette's TestClient runs its lifespan)
against the real test Postgres, and on the embedded SQLite file where noted."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.core.logging import JsonFormatter
from app.main import create_app

PASSWORD = "correct horse battery"

# Cheapest argon2id there is (accepted with FASTSHIP_ENVIRONMENT=test only): keeps the
# suite fast. Tests of the hashing itself set their own cost.
FAST_HASHING: dict[str, Any] = {
    "password_hash_memory_kib": 8,
    "password_hash_time_cost": 1,
    "password_hash_parallelism": 1,
}
FAST_HASHING_ENV = {f"FASTSHIP_{name.upper()}": str(value) for name, value in FAST_HASHING.items()}


def make_settings(**overrides: Any) -> Settings:
    environment = overrides.get("environment", "test")
    values: dict[str, Any] = {
        "environment": environment,
        "jwt_secret_key": "test-signing-key-" + "x" * 32,
        # the cheap argon2 cost is refused outside the test environment
        **(FAST_HASHING if environment == "test" else {}),
        **overrides,
    }
    return Settings.model_validate(values)


class Api:
    """A TestClient with the few helpers every test needs."""

    def __init__(self, client: TestClient, db_url: str) -> None:
        self.client = client
        self.db_url = db_url

    def signup(
        self, email: str | None = None, password: str = PASSWORD, **extra: Any
    ) -> dict[str, Any]:
        email = email or f"u{uuid.uuid4().hex[:10]}@example.com"
        response = self.client.post(
            "/api/v1/users/signup", json={"email": email, "password": password, **extra}
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def login(self, email: str, password: str = PASSWORD) -> dict[str, str]:
        response = self.client.post(
            "/api/v1/auth/token", data={"username": email, "password": password}
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def user(self, *, admin: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
        user = self.signup()
        if admin:
            self.sql("UPDATE users SET role = 'admin' WHERE email = :e", e=user["email"])
        return user, self.login(user["email"])

    def sql(self, statement: str, **params: Any) -> list[Any]:
        engine = sa.create_engine(self.db_url)
        try:
            with engine.begin() as conn:
                result = conn.execute(sa.text(statement), params)
                return list(result) if result.returns_rows else []
        finally:
            engine.dispose()

    def item(self, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
        body = {"name": "thing", "price": "1.50", **fields}
        response = self.client.post("/api/v1/items", json=body, headers=headers)
        assert response.status_code == 201, response.text
        item: dict[str, Any] = response.json()
        return item


@pytest.fixture
def api_factory(pg_database: str) -> Iterator[Callable[..., Api]]:
    clients: list[TestClient] = []

    def build(db_url: str | None = None, **overrides: Any) -> Api:
        url = db_url or pg_database
        client = TestClient(create_app(make_settings(database_url=url, **overrides)))
        client.__enter__()
        clients.append(client)
        return Api(client, url)

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def api(api_factory: Callable[..., Api]) -> Api:
    return api_factory()


@pytest.fixture
def sqlite_api(tmp_path: Path) -> Iterator[Api]:
    db = tmp_path / "fastship.db"
    settings = make_settings(sqlite_path=db, environment="development")
    with TestClient(create_app(settings)) as client:
        yield Api(client, f"sqlite:///{db}")


class LogLines:
    """JSON log lines formatted at the moment they are emitted (request id included)."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def matching(self, **fields: Any) -> list[dict[str, Any]]:
        return [line for line in self.lines if all(line.get(k) == v for k, v in fields.items())]

    def text(self) -> str:
        return "\n".join(json.dumps(line) for line in self.lines)


@pytest.fixture
def logs() -> Iterator[LogLines]:
    captured = LogLines()
    formatter = JsonFormatter()

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.lines.append(json.loads(formatter.format(record)))

    handler = Handler(level=logging.DEBUG)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield captured
    root.removeHandler(handler)
    root.setLevel(previous)
