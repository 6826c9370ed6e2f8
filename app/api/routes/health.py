"""Probes and metrics, outside /api so that they never need a token."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from app.api.deps import ServicesDep
from app.core import metrics
from app.core.errors import AppError, ErrorBody
from app.core.logging import request_id_var
from app.core.schema import head_revision, schema_status
from app.schemas import Health, Readiness

router = APIRouter(tags=["health"])


_OK = b'{"status":"ok"}'


@router.get("/healthz", response_model=Health)
async def healthz() -> Response:
    """The process is alive. Does no I/O, so a slow database never restarts pods."""
    return Response(_OK, media_type="application/json")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": ErrorBody, "description": "Not ready, with the reason"}},
)
async def readyz(services: ServicesDep) -> Response:
    """Ready to serve: the database answers and its schema serves this code."""
    timeout = services.settings.db_connect_timeout_seconds
    try:
        async with asyncio.timeout(timeout):
            async with services.db.engine.connect() as conn:
                status = await schema_status(conn)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        return _not_ready("database_unavailable", f"database unreachable ({type(exc).__name__})")
    if not status.ready:
        return _not_ready("schema_not_ready", status.describe())
    body = Readiness(
        status="ok",
        database="ok",
        schema_revision=status.database_revision,
        expected_revision=head_revision(),
    )
    return JSONResponse(body.model_dump())


def _not_ready(code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"code": code, "message": message, "details": None, "request_id": request_id_var.get()},
        status_code=503,
        headers={"Retry-After": "5"},
    )


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics() -> Response:
    if not metrics.on_api_port():
        raise AppError(404, "Not Found")
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
