"""Database engines and sessions: Postgres through psycopg 3, or an embedded SQLite file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import URL, Engine, MetaData, create_engine, event, exc, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from app.core.config import Settings

# One naming convention for every constraint, so that migrations are reproducible
# and constraint names never depend on the database's own defaults.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def database_url(settings: Settings, *, sync: bool = False) -> URL:
    """The SQLAlchemy URL for ``settings``; ``sync`` selects a driver for Alembic."""
    if settings.database_url is not None:
        url = make_url(settings.database_url.get_secret_value())
        if url.get_backend_name() in {"postgresql", "postgres"}:
            url = url.set(drivername="postgresql+psycopg")
        elif url.get_backend_name() == "sqlite":
            url = url.set(drivername="sqlite" if sync else "sqlite+aiosqlite")
        return url
    if settings.database_host is not None:
        password = settings.database_password
        return URL.create(
            "postgresql+psycopg",
            username=settings.database_user,
            password=password.get_secret_value() if password else None,
            host=settings.database_host,
            port=settings.database_port,
            database=settings.database_name,
            query={"sslmode": settings.database_sslmode},
        )
    path = settings.sqlite_path.expanduser()
    return URL.create("sqlite" if sync else "sqlite+aiosqlite", database=str(path))


def _connect_args(settings: Settings, url: URL) -> dict[str, Any]:
    if url.get_backend_name() == "sqlite":
        return {"timeout": settings.db_connect_timeout_seconds}
    args: dict[str, Any] = {
        "connect_timeout": settings.db_connect_timeout_seconds,
        "application_name": settings.app_name,
    }
    if settings.db_statement_timeout_ms:
        args["options"] = f"-c statement_timeout={settings.db_statement_timeout_ms}"
    return args


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _ensure_sqlite_dir(url: URL) -> None:
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        from pathlib import Path

        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def create_sync_engine(settings: Settings) -> Engine:
    """A synchronous engine, for migrations and the CLI."""
    url = database_url(settings, sync=True)
    _ensure_sqlite_dir(url)
    engine = create_engine(
        url, connect_args=_connect_args(settings, url), pool_pre_ping=True, hide_parameters=True
    )
    if url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


class Database:
    """The async engine and session factory of one process."""

    def __init__(self, settings: Settings) -> None:
        url = database_url(settings)
        _ensure_sqlite_dir(url)
        self.is_postgres = url.get_backend_name() == "postgresql"
        pool_args: dict[str, Any] = {}
        # SQLAlchemy's asyncio pool lets a request that asks at the right moment take a
        # returned connection ahead of the waiter woken for it, and under contention some
        # requests lose that race over and over. asyncio's Semaphore hands a freed place
        # to its oldest waiter, so `connection()` waits in line there, never in the pool
        # (numbers in bench/README.md, "Side by side: the connection pool").
        self._line: asyncio.Semaphore | None = None
        self._line_timeout = settings.db_pool_timeout_seconds
        if self.is_postgres:
            self._line = asyncio.Semaphore(settings.db_pool_size + settings.db_max_overflow)
            pool_args = {
                "pool_size": settings.db_pool_size,
                "max_overflow": settings.db_max_overflow,
                "pool_timeout": settings.db_pool_timeout_seconds,
            }
        # No ping before each checkout: it would cost a round trip on every use. A
        # connection that a database restart broke fails its statement once (503, and
        # the client may retry); SQLAlchemy then sees the disconnect and replaces every
        # connection in the pool, so the service recovers on its own.
        # Bound values (emails, password hashes, item data) stay out of the messages of
        # database errors, and so out of the logs.
        self.engine: AsyncEngine = create_async_engine(
            url, connect_args=_connect_args(settings, url), hide_parameters=True, **pool_args
        )
        if not self.is_postgres:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """An ORM session. It takes a connection from the pool when it first runs a
        statement and gives it back at commit, without a place in the line of
        `connection()`: SQLAlchemy checks the connection out with no point to wait at
        before, and a session may live on while it holds none (a password check)."""
        async with self.sessionmaker() as session:
            yield session

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection in autocommit mode, for work that is one statement: that
        statement is its own transaction, so there is no BEGIN or COMMIT round trip.
        (Under load every round trip waits its turn on the event loop while the
        connection stays checked out.) On Postgres, callers that find every connection
        taken are served in the order they asked; after `db_pool_timeout_seconds` in
        line, a caller gets SQLAlchemy's pool timeout error (the API answers 503)."""
        if self._line is None:
            async with self._autocommit.connect() as conn:
                yield conn
            return
        try:
            async with asyncio.timeout(self._line_timeout):
                await self._line.acquire()
        except TimeoutError:
            raise exc.TimeoutError(
                f"no database connection free within {self._line_timeout:g} s"
            ) from None
        try:
            async with self._autocommit.connect() as conn:
                yield conn
        finally:
            self._line.release()

    def connections_in_use(self) -> int:
        pool = self.engine.sync_engine.pool
        checked_out = getattr(pool, "checkedout", None)
        return int(checked_out()) if callable(checked_out) else 0

    async def dispose(self) -> None:
        await asyncio.shield(self.engine.dispose())
