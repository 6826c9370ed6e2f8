"""Alembic environment: runs on the connection `app.core.schema` hands over, or opens one."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

import app.models  # noqa: F401  (registers the tables on Base.metadata)
from app.core.config import get_settings
from app.core.db import Base, create_sync_engine

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    from app.core.db import database_url

    context.configure(
        url=database_url(get_settings(), sync=True).render_as_string(hide_password=False),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_sync_engine(get_settings())
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                # The API's statement_timeout is for requests: a migration may take longer.
                conn.execute(text("SET statement_timeout = 0"))
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=True,
        compare_type=True,
        # Each revision commits on its own: an expand step's work is committed, and
        # its locks released, before the contract step takes its exclusive lock.
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
