from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import app.models  # noqa: F401  (registers the tables)
from app.core import schema
from app.core.config import Settings
from app.core.db import Base


def test_the_revision_graph_agrees_with_alembic() -> None:
    script = schema.alembic_script()
    assert schema.head_revision() == script.get_current_head()
    assert schema.known_revisions() == {rev.revision for rev in script.walk_revisions()}


def test_the_models_match_the_migrations(pg_database: str) -> None:
    # What `alembic revision --autogenerate` would write: nothing, or a revision is missing.
    engine = sa.create_engine(pg_database)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_downgrade_and_upgrade_again(pg_database: str) -> None:
    from alembic import command

    from app.core.config import Settings

    engine = sa.create_engine(pg_database)
    cfg = schema.alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert schema.read_status(Settings.model_validate({"database_url": pg_database})).state == (
        schema.SchemaState.empty
    )
    status = schema.migrate(Settings.model_validate({"database_url": pg_database}))
    assert status.state is schema.SchemaState.current
    engine.dispose()


# The previous release's audit write (revision 0001's code): an INSERT without an id.
_PREVIOUS_RELEASE_AUDIT_INSERT = sa.text(
    "INSERT INTO audit_events (at, actor_id, action, entity, entity_id, request_id, data) "
    "VALUES (now(), NULL, 'create', 'item', :entity, NULL, '{}')"
)


def _to(url: str, revision: str, *, down: bool = False) -> None:
    from alembic import command

    engine = sa.create_engine(url)
    cfg = schema.alembic_config()
    try:
        with engine.connect() as conn:
            cfg.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(cfg, revision)
            conn.commit()
    finally:
        engine.dispose()


def _sql(url: str, statement: str | sa.TextClause, **params: object) -> list[Any]:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(
                sa.text(statement) if isinstance(statement, str) else statement, params
            )
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def _id_type(url: str) -> str:
    rows = _sql(
        url,
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = 'audit_events' AND column_name = 'id'",
    )
    return str(rows[0][0])


def test_audit_ids_move_to_64_bits_expand_then_contract(pg_empty_database: str) -> None:
    url = pg_empty_database
    _to(url, "0001_initial")
    for n in range(3):
        _sql(url, _PREVIOUS_RELEASE_AUDIT_INSERT, entity=f"before {n}")
    assert _id_type(url) == "integer"

    _to(url, "0002_audit_id_bigint_expand")
    # Existing rows were copied over; the previous release's inserts are copied too.
    _sql(url, _PREVIOUS_RELEASE_AUDIT_INSERT, entity="during")
    rows = _sql(url, "SELECT id, id_bigint FROM audit_events ORDER BY id")
    assert [(i, b) for i, b in rows] == [(i, i) for i in (1, 2, 3, 4)]

    settings = Settings.model_validate({"database_url": url})
    assert schema.migrate(settings).state is schema.SchemaState.current
    assert _id_type(url) == "bigint"
    assert [r[0] for r in _sql(url, "SELECT id FROM audit_events ORDER BY id")] == [1, 2, 3, 4]
    # Past 32 bits, and the previous release's inserts still work.
    _sql(url, "SELECT setval(pg_get_serial_sequence('audit_events', 'id'), 2147483700)")
    _sql(url, _PREVIOUS_RELEASE_AUDIT_INSERT, entity="after")
    after = _sql(url, "SELECT id FROM audit_events WHERE entity_id = 'after'")[0][0]
    assert after == 2147483701
    names = {
        r[0]
        for r in _sql(
            url,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'audit_events'",
        )
    }
    assert "id_bigint" not in names


def test_audit_ids_downgrade_to_32_bits_while_they_fit(pg_empty_database: str) -> None:
    url = pg_empty_database
    _to(url, "0001_initial")
    _sql(url, _PREVIOUS_RELEASE_AUDIT_INSERT, entity="old")
    _to(url, "head")
    _sql(url, _PREVIOUS_RELEASE_AUDIT_INSERT, entity="new")
    _to(url, "0002_audit_id_bigint_expand", down=True)
    # The expand state again: the trigger fills the copy.
    _sql(url, _PREVIOUS_RELEASE_AUDIT_INSERT, entity="expand")
    assert _sql(url, "SELECT count(*) FROM audit_events WHERE id_bigint = id")[0][0] == 3
    _to(url, "0001_initial", down=True)
    assert _id_type(url) == "integer"
    assert [r[0] for r in _sql(url, "SELECT id FROM audit_events ORDER BY id")] == [1, 2, 3]
    _sql(url, _PREVIOUS_RELEASE_AUDIT_INSERT, entity="back")
    assert _sql(url, "SELECT max(id) FROM audit_events")[0][0] == 4

    _to(url, "head")
    _sql(url, "SELECT setval(pg_get_serial_sequence('audit_events', 'id'), 2147483700)")
    _sql(url, _PREVIOUS_RELEASE_AUDIT_INSERT, entity="big")
    with pytest.raises(RuntimeError, match="past 2\\^31 - 1"):
        _to(url, "0002_audit_id_bigint_expand", down=True)
    assert _id_type(url) == "bigint"  # refused before changing anything
