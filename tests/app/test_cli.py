"""The command line, run as a user runs it: `python -m app ...` in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from app.core.config import Settings, secret_field_names
from app.core.schema import head_revision
from app.core.security import PasswordHashing
from tests.support.postgres import PostgresServer
from tests.support.waiting import wait_until

SIGNING_KEY = "cli-test-signing-key-" + "z" * 32
HEAD = head_revision()


def run(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("FASTSHIP_")}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env={**base, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _revision_rows(url: str) -> list[Any]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT version_num FROM alembic_version")))
    finally:
        engine.dispose()


def test_two_concurrent_migrations_run_once_and_both_succeed(
    pg_empty_database: str, pg_server: PostgresServer, tmp_path: Path
) -> None:
    env = {"FASTSHIP_DATABASE_URL": pg_empty_database}
    # Hold the migration lock so that both runs are certainly waiting at the same time.
    holder = sa.create_engine(pg_empty_database)
    results: list[subprocess.CompletedProcess[str]] = []
    with holder.connect() as conn:
        from app.core.schema import MIGRATION_LOCK_KEY

        conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        threads = [
            threading.Thread(
                target=lambda i=i: results.append(
                    run("migrate", "--termination-log", str(tmp_path / f"term{i}"), env=env)
                )
            )
            for i in range(2)
        ]
        for thread in threads:
            thread.start()

        def waiting() -> int:
            count = conn.execute(
                sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            ).scalar()
            conn.commit()
            return int(count or 0)

        wait_until(lambda: waiting() == 2, timeout=60, interval=0.1, what="both migrations waiting")
        conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
        conn.commit()
    for thread in threads:
        thread.join(60)
    holder.dispose()
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    for result in results:
        assert f"database at revision {HEAD} (current)" in result.stdout
    assert _revision_rows(pg_empty_database) == [(HEAD,)]
    assert (tmp_path / "term0").read_text() == HEAD


def test_migrate_reports_an_unreachable_database(tmp_path: Path) -> None:
    result = run(
        "migrate",
        "--termination-log",
        str(tmp_path / "term"),
        env={
            "FASTSHIP_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
            "FASTSHIP_DB_CONNECT_TIMEOUT_SECONDS": "1",
        },
    )
    assert result.returncode == 1
    assert "migration failed: OperationalError" in result.stderr
    assert (tmp_path / "term").read_text().startswith("failed")


def test_wait_for_schema_waits_for_the_migration(pg_empty_database: str) -> None:
    env = {"FASTSHIP_DATABASE_URL": pg_empty_database}
    timed_out = run("wait-for-schema", "--timeout", "1", "--interval", "0.2", env=env)
    assert timed_out.returncode == 1
    assert f"needs {HEAD}" in timed_out.stderr
    waiter = subprocess.Popen(
        [sys.executable, "-m", "app", "wait-for-schema", "--timeout", "60", "--interval", "0.2"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert waiter.stdout is not None
    # Its first check found the empty database (the process gives up after 60 s).
    assert waiter.stdout.readline().startswith("waiting for schema: ")
    assert waiter.poll() is None
    assert run("migrate", "--termination-log", "/nonexistent/x", env=env).returncode == 0
    out, _ = waiter.communicate(timeout=30)
    assert waiter.returncode == 0
    assert f"schema at {HEAD}" in out


def test_bad_arguments_and_settings_are_explained() -> None:
    bad_timeout = run("wait-for-schema", "--timeout", "-3")
    assert bad_timeout.returncode == 2
    assert "must be greater than 0" in bad_timeout.stderr
    bad_port = run("migrate", env={"FASTSHIP_PORT": "eighty", "FASTSHIP_DB_POOL_SIZE": "0"})
    assert bad_port.returncode == 2
    assert "FASTSHIP_PORT: Input should be a valid integer" in bad_port.stderr
    assert "FASTSHIP_DB_POOL_SIZE: Input should be greater than or equal to 1" in bad_port.stderr
    unknown = run("migrate", env={"FASTSHIP_DATABASE_URL": "x", "FASTSHIP_DATABASE_HOST": "y"})
    assert unknown.returncode == 2
    assert "not both" in unknown.stderr
    short_key = run("migrate", env={"FASTSHIP_JWT_SECRET_KEY": "hunter2"})
    assert short_key.returncode == 2
    assert "at least 32 characters" in short_key.stderr
    assert "hunter2" not in short_key.stderr  # secrets are never echoed


def test_a_removed_setting_is_refused_with_what_to_do() -> None:
    for command in ("serve", "migrate"):
        result = run(command, env={"FASTSHIP_EVENT_LOOP": "uvloop"})
        assert result.returncode == 2
        assert "FASTSHIP_EVENT_LOOP: is no longer a setting" in result.stderr
        assert "remove the variable" in result.stderr


def test_serve_refuses_the_development_key_in_production() -> None:
    result = run("serve", env={"FASTSHIP_ENVIRONMENT": "production"})
    assert result.returncode == 2
    assert "FASTSHIP_JWT_SECRET_KEY" in result.stderr
    assert "development key" in result.stderr


def test_a_cheap_password_hash_is_accepted_in_the_test_environment_only() -> None:
    cheap = {"FASTSHIP_PASSWORD_HASH_MEMORY_KIB": "8", "FASTSHIP_PASSWORD_HASH_TIME_COST": "1"}
    for environment in ("development", "production"):
        refused = run("migrate", env={"FASTSHIP_ENVIRONMENT": environment, **cheap})
        assert refused.returncode == 2
        assert "FASTSHIP_PASSWORD_HASH_MEMORY_KIB is 8" in refused.stderr
        assert f"FASTSHIP_ENVIRONMENT={environment}" in refused.stderr
        assert "only with FASTSHIP_ENVIRONMENT=test" in refused.stderr
    one_pass = run("migrate", env={"FASTSHIP_PASSWORD_HASH_TIME_COST": "1"})
    assert one_pass.returncode == 2
    assert "FASTSHIP_PASSWORD_HASH_TIME_COST is 1" in one_pass.stderr
    below_argon2 = Settings.model_validate(
        {"environment": "test", "password_hash_memory_kib": 8, "password_hash_time_cost": 1}
    )
    hashing = PasswordHashing(below_argon2)
    try:
        assert hashing.hash_sync("x").startswith("$argon2id$v=19$m=8,t=1,p=1$")
    finally:
        hashing.close()
    lanes = run(
        "migrate",
        env={
            "FASTSHIP_ENVIRONMENT": "test",
            "FASTSHIP_PASSWORD_HASH_MEMORY_KIB": "8",
            "FASTSHIP_PASSWORD_HASH_PARALLELISM": "2",
        },
    )
    assert lanes.returncode == 2
    assert "at least 8 KiB per lane, 16 with FASTSHIP_PASSWORD_HASH_PARALLELISM=2" in lanes.stderr


def test_create_admin_from_flags_and_env(pg_database: str) -> None:
    env = {
        "FASTSHIP_DATABASE_URL": pg_database,
        "FASTSHIP_ENVIRONMENT": "test",
        "FASTSHIP_JWT_SECRET_KEY": SIGNING_KEY,
    }
    created = run(
        "create-admin",
        "--email",
        "Root@Example.com",
        "--password-stdin",
        env=env,
        stdin="a long enough password\n",
    )
    assert created.returncode == 0, created.stderr
    assert "created admin root@example.com" in created.stdout
    again = run(
        "create-admin",
        env={
            **env,
            "FASTSHIP_ADMIN_EMAIL": "root@example.com",
            "FASTSHIP_ADMIN_PASSWORD": "another password",
        },
    )
    assert again.returncode == 1
    assert "already exists" in again.stderr
    weak = run(
        "create-admin", "--email", "x@example.com", "--password-stdin", env=env, stdin="short\n"
    )
    assert weak.returncode == 2
    assert "password" in weak.stderr
    missing = run("create-admin", env=env, stdin="")
    assert missing.returncode == 2
    assert "needs an email and a password" in missing.stderr
    engine = sa.create_engine(pg_database)
    with engine.connect() as conn:
        rows = list(conn.execute(sa.text("SELECT email, role FROM users")))
    engine.dispose()
    assert rows == [("root@example.com", "admin")]


def test_settings_schema_marks_secrets() -> None:
    result = run("settings-schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert set(schema["properties"]) == set(Settings.model_fields)
    marked = {name for name, prop in schema["properties"].items() if prop.get("secret")}
    assert (
        marked
        == secret_field_names()
        == {"database_url", "database_password", "jwt_secret_key", "redis_url"}
    )


def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("serve", "migrate", "wait-for-schema", "create-admin", "settings-schema"):
        assert command in result.stdout
