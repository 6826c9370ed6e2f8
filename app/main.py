"""The FastAPI application: wiring only. Endpoints live in app/api/routes/."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy import func, select

from app import __version__, web
from app.api.deps import Services
from app.api.routes import auth, health, items, users
from app.core import errors, metrics, schema
from app.core.cache import create_cache
from app.core.config import Environment, Settings, get_settings
from app.core.db import Database
from app.core.middleware import CompressWhenAccepted, RequestContextMiddleware, route_templates
from app.core.security import PasswordHashing, Tokens
from app.models import Role, User
from app.services.audit import AuditLog
from app.services.auth import LoginCounters

log = logging.getLogger("fastship")

DESCRIPTION = """
Users and items behind OAuth2 password login.

1. Sign up with `POST /api/v1/users/signup`, or use an admin created by
   `python -m app create-admin`.
2. Press **Authorize** and log in with your email as the username.
3. Every error has the same shape: `code`, `message`, `details`, `request_id`.
"""

BOOTSTRAP_ADMIN_EMAIL = "admin@example.com"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.check_can_serve()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.should_auto_migrate:
            status = await asyncio.to_thread(schema.migrate, settings)
            log.info("schema migrated", extra={"revision": status.database_revision})
        db = Database(settings)
        # Both are slow the first time (Alembic's import, one argon2 hash): pay for them
        # side by side, before the first request.
        hashing, _ = await asyncio.gather(
            asyncio.to_thread(PasswordHashing, settings), asyncio.to_thread(schema.head_revision)
        )
        services = Services(
            settings=settings,
            db=db,
            cache=create_cache(settings),
            hashing=hashing,
            tokens=Tokens(settings),
            audit=AuditLog(db),
            login_counters=LoginCounters(db, settings),
        )
        app.state.services = services
        metrics.track_pool(db.connections_in_use)
        if not settings.uses_postgres and settings.environment is Environment.development:
            await _bootstrap_admin(services)
        _freeze_startup_objects()
        log.info(
            "started",
            extra={
                "version": __version__,
                "database": "postgres" if settings.uses_postgres else "sqlite",
            },
        )
        try:
            yield
        finally:
            await services.audit.close()
            await services.login_counters.close()
            await services.cache.close()
            await db.dispose()
            hashing.close()

    docs = settings.docs_enabled
    app = FastAPI(
        title=settings.app_name,
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        root_path=settings.root_path,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        swagger_ui_parameters={"persistAuthorization": True},
        telemetry={
            "tracing": settings.opentelemetry_enabled,
            "metrics": settings.opentelemetry_enabled,
            "logs": settings.opentelemetry_enabled,
        },
    )
    errors.install(app)

    # Routers are tried in order and each one's routes in turn: the probes first, then
    # the API by how often it is called.
    app.include_router(health.router)
    for module in (items, users, auth):
        app.include_router(module.router, prefix="/api/v1")
    app.include_router(web.create_router())

    # Added innermost first: requests pass RequestContext, then CORS, then GZip.
    app.add_middleware(CompressWhenAccepted, minimum_size=settings.gzip_minimum_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
        )
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_request_body_bytes,
        access_log=settings.access_log,
        route_templates=route_templates(app.routes),
    )
    return app


def _freeze_startup_objects() -> None:
    """Move everything built so far (modules, models, routes: about 100,000 objects
    that live as long as the process) out of the garbage collector's view, so that its
    full passes scan only what requests create. Then turn the collector on, if `serve`
    turned it off while importing (which creates no garbage worth the passes)."""
    gc.freeze()
    gc.enable()


def _write_private(sqlite_path: Path, secret: str) -> Path:
    path = sqlite_path.expanduser().parent / "admin-password.txt"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return path


async def _bootstrap_admin(services: Services) -> None:
    """On the embedded database's first start, create an admin and leave its password
    in a file beside the database (never in a log line)."""
    async with services.db.session() as session:
        if (await session.scalar(select(func.count()).select_from(User))) or 0:
            return
    password = secrets.token_urlsafe(16)
    hashed_password = await services.hashing.hash(password)  # no connection held
    async with services.db.session() as session:
        session.add(
            User(
                email=BOOTSTRAP_ADMIN_EMAIL,
                full_name="Admin",
                hashed_password=hashed_password,
                role=Role.admin.value,
            )
        )
        await session.commit()
    path = await asyncio.to_thread(_write_private, services.settings.sqlite_path, password)
    print(
        f"\nFirst start: created the admin {BOOTSTRAP_ADMIN_EMAIL}; its password is in {path}\n",
        file=sys.stderr,
        flush=True,
    )
