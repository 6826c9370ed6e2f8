"""The database schema's revision: what this code expects, what the database has,
and the migration that moves one to the other.

A database revision that this code does not know is taken to be newer: migrations
are expand/contract, so the previous release keeps working on a newer schema, and a
``helm rollback`` does not leave its pods waiting forever.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.config import Settings
from app.core.db import create_sync_engine

if TYPE_CHECKING:  # Alembic is imported when first needed: it is slow to import.
    from alembic.config import Config
    from alembic.script import ScriptDirectory

# pg_advisory_lock key: "fastship" as 8 ASCII bytes, so it is recognisable in pg_locks.
MIGRATION_LOCK_KEY = int.from_bytes(b"fastship", "big") & 0x7FFF_FFFF_FFFF_FFFF


class SchemaState(StrEnum):
    current = "current"  # at this code's head
    newer = "newer"  # a revision this code does not know: a later release migrated
    behind = "behind"  # an older revision: the migration has not run yet
    empty = "empty"  # no schema at all


@dataclass(frozen=True)
class SchemaStatus:
    state: SchemaState
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
                f"schema at {self.database_revision}, newer than this code's "
                f"{self.expected_revision}"
            )
        have = self.database_revision or "no schema"
        return f"database has {have}, this code needs {self.expected_revision}: run migrations"


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("app") / "migrations"))
    return cfg


def alembic_script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


_REVISION = re.compile(r"""^revision(?:: str)? = ["']([^"']+)["']""", re.M)
_DOWN = re.compile(r"^down_revision(?:: [^=]+)? = (.+)$", re.M)


@lru_cache
def _revision_graph() -> dict[str, str | None]:
    """Each revision shipped in app/migrations/versions and the one it follows, read
    from the files themselves: the server answers /readyz without importing Alembic
    (a test checks that this agrees with Alembic's own reading)."""
    graph: dict[str, str | None] = {}
    for path in (resources.files("app") / "migrations" / "versions").iterdir():
        if not path.name.endswith(".py") or path.name.startswith("_"):
            continue
        text = path.read_text()
        revision, down = _REVISION.search(text), _DOWN.search(text)
        if revision is None or down is None:
            raise RuntimeError(f"{path.name}: no `revision = ...` / `down_revision = ...` lines")
        parent = down.group(1).strip().strip("'\"")
        graph[revision.group(1)] = None if parent == "None" else parent
    return graph


def head_revision() -> str:
    graph = _revision_graph()
    heads = set(graph) - {parent for parent in graph.values() if parent}
    if len(heads) != 1:
        raise RuntimeError(f"app/migrations needs exactly one head revision, found {sorted(heads)}")
    return heads.pop()


def known_revisions() -> frozenset[str]:
    return frozenset(_revision_graph())


def classify(database_revision: str | None) -> SchemaStatus:
    head = head_revision()
    if database_revision is None:
        state = SchemaState.empty
    elif database_revision == head:
        state = SchemaState.current
    elif database_revision in known_revisions():
        state = SchemaState.behind
    else:
        state = SchemaState.newer
    return SchemaStatus(state, database_revision, head)


def _read_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


async def schema_status(conn: AsyncConnection) -> SchemaStatus:
    """The schema status, read over an async connection (used by /readyz)."""
    return classify(await conn.run_sync(_read_revision))


def read_status(settings: Settings) -> SchemaStatus:
    engine = create_sync_engine(settings)
    try:
        with engine.connect() as conn:
            return classify(_read_revision(conn))
    finally:
        engine.dispose()


def migrate(settings: Settings) -> SchemaStatus:
    """Upgrade to head. On Postgres this runs under an advisory lock: of concurrent
    runs one migrates while the others wait, then find nothing left to do."""
    from alembic import command

    engine = create_sync_engine(settings)
    cfg = alembic_config()
    try:
        with engine.connect() as conn:
            postgres = conn.dialect.name == "postgresql"
            if postgres:
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                conn.commit()
            try:
                status = classify(_read_revision(conn))
                conn.commit()
                if status.state is not SchemaState.newer:
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
                    conn.commit()
                return classify(_read_revision(conn))
            finally:
                if postgres:
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
