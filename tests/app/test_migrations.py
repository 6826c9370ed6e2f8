from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import app.models  # noqa: F401  (registers the tables)
from app.core import schema
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
