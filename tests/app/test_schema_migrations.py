"""Migrations as they meet real databases: a migration longer than the API's statement
timeout, a second ``migrate`` waiting behind it, DDL stuck behind a long query, the
deadline, merge revisions and a database at a revision this code does not know.

Test revisions live in a temporary versions directory that is added to the
application's own (``schema.add_version_location``); the ``migrate`` runs are
subprocesses, as in a Job.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.core import schema
from app.core.config import Settings
from tests.support.kube import REPO_ROOT
from tests.support.waiting import wait_until

SLOW_SECONDS = 32  # longer than the API's 15 s statement_timeout, twice over for the waiter


def write_revision(
    directory: Path, revision: str, down: str | tuple[str, ...] | None, upgrade: str
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{revision}.py").write_text(
        textwrap.dedent(
            f'''\
            """Test revision {revision}."""

            from alembic import op

            revision = {revision!r}
            down_revision = {down!r}
            branch_labels = None
            depends_on = None


            def upgrade() -> None:
            '''
        )
        + textwrap.indent(textwrap.dedent(upgrade).strip() or "pass", "    ")
        + "\n\n\ndef downgrade() -> None:\n    pass\n"
    )


def migrate_process(
    versions: Path, db_url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("FASTSHIP_")}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.app.migrate_runner", str(versions), "migrate", *args],
        cwd=REPO_ROOT,
        # The API's settings as the chart sets them: a 15 s statement_timeout.
        env={
            **base,
            "FASTSHIP_DATABASE_URL": db_url,
            "FASTSHIP_DB_STATEMENT_TIMEOUT_MS": "15000",
            **(env or {}),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def revisions_in(db_url: str) -> list[str]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.text("SELECT version_num FROM alembic_version"))]
    finally:
        engine.dispose()


def wait_for_lock_holder(conn: sa.Connection, *, waiting: int, timeout: float = 30) -> None:
    """Until the migration lock is held and ``waiting`` sessions wait for it."""
    query = sa.text(
        "SELECT count(*) FILTER (WHERE granted), count(*) FILTER (WHERE NOT granted) "
        "FROM pg_locks WHERE locktype = 'advisory'"
    )

    def reached() -> tuple[int, int] | None:
        held, queued = conn.execute(query).one()
        conn.commit()
        return (held, queued) if held >= 1 and queued >= waiting else None

    wait_until(reached, timeout=timeout, interval=0.1, what=f"the lock held, {waiting} waiting")


@pytest.fixture
def versions(tmp_path: Path) -> Iterator[Path]:
    """A versions directory for test revisions, also read by this process."""
    directory = tmp_path / "versions"
    directory.mkdir()
    yield directory
    schema.reset_version_locations()


def test_a_long_migration_and_a_second_migrate_behind_it_both_succeed(
    pg_database: str, versions: Path
) -> None:
    head = schema.head_revision()
    write_revision(
        versions,
        "9000_slow",
        head,
        f"""
        op.execute("SELECT pg_sleep({SLOW_SECONDS})")
        op.execute("CREATE TABLE slow_marker (id integer)")
        """,
    )
    t0 = time.monotonic()
    first = migrate_process(versions, pg_database)
    engine = sa.create_engine(pg_database)
    with engine.connect() as conn:
        wait_for_lock_holder(conn, waiting=0)
        second = migrate_process(versions, pg_database)
        t_second = time.monotonic()
        wait_for_lock_holder(conn, waiting=1)
    engine.dispose()
    out1, err1 = first.communicate(timeout=120)
    t_first_done = time.monotonic()
    out2, err2 = second.communicate(timeout=120)
    t_second_done = time.monotonic()
    print(
        f"first migrate {t_first_done - t0:.1f}s, second waited and finished after "
        f"{t_second_done - t_second:.1f}s"
    )
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert t_first_done - t0 >= SLOW_SECONDS
    assert t_second_done - t_second > 15, "the second run waited longer than 15 s"
    assert "database at revision 9000_slow (current)" in out1
    assert "database at revision 9000_slow (current)" in out2
    assert revisions_in(pg_database) == ["9000_slow"]


def alter_waits_for_a_lock(conn: sa.Connection) -> bool:
    waiting = conn.execute(
        sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE 'ALTER TABLE users%'"
        )
    ).scalar()
    conn.commit()
    return bool(waiting)


def test_ddl_behind_a_long_query_gives_way_and_is_retried(pg_database: str, versions: Path) -> None:
    write_revision(
        versions,
        "9001_add_column",
        schema.head_revision(),
        'op.execute("ALTER TABLE users ADD COLUMN nickname text")',
    )
    engine = sa.create_engine(pg_database)
    holder = engine.connect()
    # A long-running reader of `users` (an open transaction holding ACCESS SHARE).
    holder.execute(sa.text("SELECT count(*) FROM users"))
    migration = migrate_process(versions, pg_database, "--lock-timeout", "0.5")
    try:
        with engine.connect() as reader:
            wait_for_lock_holder(reader, waiting=0)
            reader.execute(sa.text("SET statement_timeout = 3000"))
            # While the ALTER is retried, other queries of `users` still get through: the
            # ALTER does not sit in the lock queue for longer than its lock_timeout. Each
            # round reads while one attempt of the ALTER waits in that queue.
            for _ in range(3):
                wait_until(
                    lambda: alter_waits_for_a_lock(reader),
                    timeout=30,
                    interval=0.02,
                    what="an attempt of the ALTER waiting for its lock",
                )
                t0 = time.monotonic()
                reader.execute(sa.text("SELECT count(*) FROM users")).scalar()
                reader.commit()
                assert time.monotonic() - t0 < 2
        assert migration.poll() is None, "the migration waits while the reader runs"
    finally:
        holder.rollback()
        holder.close()
    out, err = migration.communicate(timeout=60)
    engine.dispose()
    assert migration.returncode == 0, err
    assert "retrying in" in err
    assert "database at revision 9001_add_column (current)" in out


def test_the_deadline_bounds_the_wait_for_another_migration(
    pg_database: str, versions: Path, tmp_path: Path
) -> None:
    engine = sa.create_engine(pg_database)
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": schema.MIGRATION_LOCK_KEY})
        conn.commit()
        t0 = time.monotonic()
        migration = migrate_process(
            versions,
            pg_database,
            "--termination-log",
            str(tmp_path / "term"),
            env={"FASTSHIP_MIGRATE_DEADLINE_SECONDS": "3"},
        )
        _, err = migration.communicate(timeout=60)
        elapsed = time.monotonic() - t0
        conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": schema.MIGRATION_LOCK_KEY})
        conn.commit()
    engine.dispose()
    assert migration.returncode == 1
    assert 3 <= elapsed < 20
    assert "held the migration lock for all of the 3s deadline" in err
    assert (tmp_path / "term").read_text().startswith("failed: another migration held")


def test_a_bad_deadline_in_the_environment_is_explained(versions: Path) -> None:
    proc = migrate_process(
        versions, "sqlite:///nowhere.db", env={"FASTSHIP_MIGRATE_DEADLINE_SECONDS": "soon"}
    )
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "FASTSHIP_MIGRATE_DEADLINE_SECONDS must be a number of seconds" in err


def test_a_merge_revision_is_one_head_and_migrates(pg_database: str, versions: Path) -> None:
    base = schema.head_revision()
    write_revision(versions, "9100_a", base, 'op.execute("CREATE TABLE branch_a (id int)")')
    write_revision(versions, "9100_b", base, 'op.execute("CREATE TABLE branch_b (id int)")')
    write_revision(versions, "9101_merge", ("9100_a", "9100_b"), "")
    schema.add_version_location(versions)

    assert schema.head_revision() == "9101_merge"
    assert {"9100_a", "9100_b", "9101_merge", base} <= schema.known_revisions()
    # Between the branches the database has two rows; both known, not the head: behind.
    between = schema.classify(["9100_b", "9100_a"])
    assert between.state is schema.SchemaState.behind
    assert between.database_revision == "9100_a+9100_b"
    assert schema.classify([base]).state is schema.SchemaState.behind

    settings = Settings.model_validate({"database_url": pg_database})
    assert schema.read_status(settings).state is schema.SchemaState.behind
    status = schema.migrate(settings)
    assert status.state is schema.SchemaState.current
    assert revisions_in(pg_database) == ["9101_merge"]
    assert schema.wait_for_schema(settings, timeout=1).database_revision == "9101_merge"


def test_two_unmerged_heads_are_refused_with_the_fix(versions: Path) -> None:
    base = schema.head_revision()
    write_revision(versions, "9200_a", base, "")
    write_revision(versions, "9200_b", base, "")
    schema.add_version_location(versions)
    with pytest.raises(RuntimeError, match=r"exactly one head.*9200_a.*9200_b.*merge heads"):
        schema.head_revision()


def test_an_unknown_revision_is_taken_as_newer_and_left_alone(
    pg_database: str, tmp_path: Path
) -> None:
    # What a database migrated by a later release looks like to this code.
    engine = sa.create_engine(pg_database)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff_from_the_future'"))
    engine.dispose()
    settings = Settings.model_validate({"database_url": pg_database})
    status = schema.read_status(settings)
    assert status.state is schema.SchemaState.newer
    assert status.ready, "the previous release serves a newer schema (expand/contract)"
    assert "does not know" in status.describe()

    proc = migrate_process(tmp_path, pg_database)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "database at revision ffff_from_the_future (newer)" in out
    assert "nothing to do" in err
    assert revisions_in(pg_database) == ["ffff_from_the_future"]


def test_a_failing_revision_reports_the_database_error_without_the_statement(
    pg_database: str, versions: Path, tmp_path: Path
) -> None:
    write_revision(
        versions,
        "f00d0000fa11",
        schema.head_revision(),
        'op.execute("SELECT no_such_function(42)")',
    )
    proc = migrate_process(versions, pg_database, "--termination-log", str(tmp_path / "term"))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    # What `kubectl get migration` shows: the cause, in one line, without SQL or parameters.
    message = (tmp_path / "term").read_text()
    assert message.startswith("failed: UndefinedFunction: function no_such_function(integer)")
    assert "\n" not in message
    assert "[SQL" not in message
