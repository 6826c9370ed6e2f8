"""The database schema's revision: what this code expects, what the database has,
and the migration that moves one to the other.

The revisions come from Alembic's own script API (``ScriptDirectory``), so merge
revisions, branch labels and several version directories are read exactly as
Alembic reads them.

A database revision that this code does not know is taken to be newer: migrations
are expand/contract, so the previous release keeps working on a newer schema, and a
``helm rollback`` does not leave its pods waiting forever. ``migrate`` then changes
nothing and says so.

Migrations run on a connection of their own settings, not the API's: no
``statement_timeout`` (a backfill may take as long as it takes), and a short
``lock_timeout`` for each DDL statement, so that a migration stuck behind a long
query gives up its place in the lock queue (and is retried) instead of blocking every
query on that table behind it. The wait for another migration (the advisory lock)
and the retries are bounded by a deadline: the migration Job's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.config import Settings
from app.core.db import create_sync_engine

if TYPE_CHECKING:  # Alembic is imported when first needed: it is slow to import.
    from alembic.config import Config
    from alembic.script import ScriptDirectory

# pg_advisory_lock key: "fastship" as 8 ASCII bytes, so it is recognisable in pg_locks.
MIGRATION_LOCK_KEY = int.from_bytes(b"fastship", "big") & 0x7FFF_FFFF_FFFF_FFFF
# SQLSTATE of a lock wait that ran into lock_timeout.
LOCK_NOT_AVAILABLE = "55P03"
# How long one DDL statement may wait for its table lock before it gives up its place
# in the queue (the migration is then retried).
DEFAULT_LOCK_TIMEOUT = 5.0
DEFAULT_RETRY_INTERVAL = 2.0

# Version directories besides app/migrations/versions (tests add a revision this way).
_extra_version_locations: list[Path] = []


class SchemaState(StrEnum):
    current = "current"  # at this code's head
    newer = "newer"  # a revision this code does not know: a later release migrated
    behind = "behind"  # an older revision: the migration has not run yet
    empty = "empty"  # no schema at all


@dataclass(frozen=True)
class SchemaStatus:
    state: SchemaState
    # The database's revision; a database between the branches of a merge revision has
    # several, joined with "+" in sorted order.
    database_revision: str | None
    expected_revision: str

    @property
    def ready(self) -> bool:
        return self.state in (SchemaState.current, SchemaState.newer)

    def describe(self) -> str:
        if self.state is SchemaState.current:
            return f"schema at {self.expected_revision}"
        if self.state is SchemaState.newer:
            return (
                f"schema at {self.database_revision}, which this code does not know: taken to "
                f"be newer than this code's {self.expected_revision} (a later release migrated)"
            )
        have = self.database_revision or "no schema"
        return f"database has {have}, this code needs {self.expected_revision}: run migrations"


class MigrationError(RuntimeError):
    """The migration could not run; the message says why and what to do."""


def add_version_location(path: Path) -> None:
    """Read revisions from ``path`` too (after app/migrations/versions)."""
    _extra_version_locations.append(Path(path))
    _revisions.cache_clear()


def reset_version_locations() -> None:
    """Read revisions from app/migrations/versions only (undoes add_version_location)."""
    _extra_version_locations.clear()
    _revisions.cache_clear()


def alembic_config() -> Config:
    from alembic.config import Config

    migrations = resources.files("app") / "migrations"
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations))
    cfg.set_main_option("path_separator", "os")
    locations = [str(migrations / "versions"), *map(str, _extra_version_locations)]
    cfg.set_main_option("version_locations", os.pathsep.join(locations))
    return cfg


def alembic_script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


@dataclass(frozen=True)
class _Revisions:
    head: str
    known: frozenset[str]


@lru_cache
def _revisions() -> _Revisions:
    script = alembic_script()
    heads = script.get_heads()
    if len(heads) != 1:
        raise RuntimeError(
            f"app/migrations needs exactly one head revision, found {sorted(heads)}: "
            "add a merge revision (alembic merge heads)"
        )
    return _Revisions(heads[0], frozenset(rev.revision for rev in script.walk_revisions()))


def head_revision() -> str:
    return _revisions().head


def known_revisions() -> frozenset[str]:
    return _revisions().known


def classify(database_revisions: str | Iterable[str] | None) -> SchemaStatus:
    """The state of a database at ``database_revisions`` (the rows of alembic_version)."""
    if database_revisions is None:
        revisions: tuple[str, ...] = ()
    elif isinstance(database_revisions, str):
        revisions = (database_revisions,)
    else:
        revisions = tuple(sorted(set(database_revisions)))
    revisions_ = _revisions()
    shown = "+".join(revisions) or None
    if not revisions:
        state = SchemaState.empty
    elif any(rev not in revisions_.known for rev in revisions):
        state = SchemaState.newer
    elif revisions == (revisions_.head,):
        state = SchemaState.current
    else:
        state = SchemaState.behind
    return SchemaStatus(state, shown, revisions_.head)


def _read_revisions(conn: Connection) -> list[str]:
    if not inspect(conn).has_table("alembic_version"):
        return []
    return [str(row[0]) for row in conn.execute(text("SELECT version_num FROM alembic_version"))]


async def schema_status(conn: AsyncConnection) -> SchemaStatus:
    """The schema status, read over an async connection (used by /readyz)."""
    return classify(await conn.run_sync(_read_revisions))


def read_status(settings: Settings) -> SchemaStatus:
    engine = create_sync_engine(settings)
    try:
        with engine.connect() as conn:
            return classify(_read_revisions(conn))
    finally:
        engine.dispose()


def _lock_not_available(exc: BaseException) -> bool:
    orig = exc.orig if isinstance(exc, DBAPIError) else None
    return getattr(orig, "sqlstate", None) == LOCK_NOT_AVAILABLE


def _set(conn: Connection, name: str, seconds: float) -> None:
    # SET cannot take bind parameters; the value is an integer of milliseconds.
    conn.execute(text(f"SET {name} = {max(0, int(seconds * 1000))}"))
    conn.commit()


def migrate(
    settings: Settings,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    deadline: float | None = None,
    retry_interval: float = DEFAULT_RETRY_INTERVAL,
    report: Callable[[str], None] | None = None,
) -> SchemaStatus:
    """Upgrade to head. On Postgres this runs under an advisory lock: of concurrent
    runs one migrates while the others wait, then find nothing left to do.

    ``lock_timeout`` (seconds, 0 = wait forever) bounds each statement's wait for a table
    or row lock; a migration that runs into it is rolled back and tried again after
    ``retry_interval``. ``deadline`` (seconds from now, None = none) bounds the wait for
    the advisory lock and the retries: past it, :class:`MigrationError`.
    """
    from alembic import command

    say = report or (lambda _message: None)
    started = time.monotonic()

    def remaining() -> float | None:
        return None if deadline is None else deadline - (time.monotonic() - started)

    engine = create_sync_engine(settings)
    cfg = alembic_config()
    try:
        with engine.connect() as conn:
            postgres = conn.dialect.name == "postgresql"
            locked = False
            try:
                if postgres:
                    # The API's statement_timeout is for requests, not for migrations.
                    _set(conn, "statement_timeout", 0)
                    left = remaining()
                    # lock_timeout bounds the wait for the advisory lock too (0 = forever).
                    _set(conn, "lock_timeout", 0 if left is None else max(left, 0.001))
                    try:
                        conn.execute(
                            text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                        )
                    except DBAPIError as exc:
                        if not _lock_not_available(exc):
                            raise
                        conn.rollback()
                        raise MigrationError(
                            f"another migration held the migration lock for all of the "
                            f"{deadline:g}s deadline; it still runs or hangs: see "
                            "pg_stat_activity (application_name) and pg_locks"
                        ) from None
                    conn.commit()
                    locked = True
                    _set(conn, "lock_timeout", lock_timeout)
                attempt = 0
                while True:
                    status = classify(_read_revisions(conn))
                    conn.commit()
                    if status.state is SchemaState.newer:
                        return status
                    try:
                        cfg.attributes["connection"] = conn
                        command.upgrade(cfg, "head")
                        conn.commit()
                        break
                    except DBAPIError as exc:
                        conn.rollback()
                        if not (postgres and _lock_not_available(exc)):
                            raise
                        attempt += 1
                        left = remaining()
                        if left is not None and left < retry_interval:
                            raise MigrationError(
                                f"a statement of the migration waited longer than its "
                                f"lock_timeout ({lock_timeout:g}s) for a lock, {attempt} "
                                f"time(s), until the {deadline:g}s deadline: long-running "
                                "queries or transactions hold the tables it changes "
                                f"({exc.orig})"
                            ) from None
                        say(
                            f"a statement waited longer than lock_timeout ({lock_timeout:g}s) "
                            f"for a lock; rolled back, retrying in {retry_interval:g}s "
                            f"(attempt {attempt + 1})"
                        )
                        time.sleep(retry_interval)
                return classify(_read_revisions(conn))
            finally:
                if locked:
                    conn.rollback()
                    conn.execute(
                        text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY}
                    )
                    conn.commit()
    finally:
        engine.dispose()


def wait_for_schema(
    settings: Settings, *, timeout: float, interval: float = 1.0, report: bool = True
) -> SchemaStatus:
    """Block until the database's schema serves this code, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            status = read_status(settings)
            message = status.describe()
            if status.ready:
                return status
        except SQLAlchemyError as exc:
            message = f"database unreachable: {type(exc).__name__}"
        if report and message != last:
            print(f"waiting for schema: {message}", flush=True)
            last = message
        if time.monotonic() >= deadline:
            raise TimeoutError(message)
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
