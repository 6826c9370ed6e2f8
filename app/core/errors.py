"""One JSON shape for every error response:

    {"code": "not_found", "message": "Item not found", "details": null, "request_id": "..."}

``details`` lists field problems for validation errors. No stack trace or database
message ever reaches a client; they go to the log with the request id.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.cache import CacheUnavailableError
from app.core.logging import request_id_var

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}


class FieldProblem(BaseModel):
    field: str
    message: str
    type: str


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx response."""

    code: str
    message: str
    details: list[FieldProblem] | None = None
    request_id: str | None = None


class AppError(StarletteHTTPException):
    """An error with a stable machine-readable ``code``."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code, message, headers)
        self.code = code or _CODES.get(status_code, "error")


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    details: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {
        "code": code or _CODES.get(status, "error"),
        "message": message,
        "details": details,
        "request_id": request_id_var.get(),
    }
    return JSONResponse(body, status_code=status, headers=dict(headers) if headers else None)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    code = exc.code if isinstance(exc, AppError) else None
    return error_response(exc.status_code, message, code=code, headers=exc.headers)


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc) or "request"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # The offending input is left out on purpose: it may be a password.
    details = [
        {
            "field": _field_name(err.get("loc", ())),
            "message": str(err.get("msg", "invalid")).removeprefix("Value error, "),
            "type": str(err.get("type", "invalid")),
        }
        for err in exc.errors()
    ]
    fields = ", ".join(sorted({d["field"] for d in details}))
    return error_response(422, f"Invalid request: check {fields}", details=details)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable", extra={"error_type": type(exc).__name__})
    return error_response(
        503,
        "The database is unavailable; retry shortly",
        code="database_unavailable",
        headers={"Retry-After": "5"},
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if exc.connection_invalidated or isinstance(exc, OperationalError):
        return await _database_unavailable(request, exc)
    if isinstance(exc, DataError):
        log.info("input refused by the database", extra={"error_type": type(exc.orig).__name__})
        return error_response(400, "The request contains a value the database cannot store")
    log.error("database error", exc_info=exc)
    return error_response(500, "Internal error")


async def _cache_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("shared cache unavailable", extra={"error_type": type(exc).__name__})
    return error_response(
        503,
        "The shared cache is unavailable, so the change was not made; retry shortly",
        code="cache_unavailable",
        headers={"Retry-After": "5"},
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(PoolTimeout, _database_unavailable)
    app.add_exception_handler(ConnectionError, _database_unavailable)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(CacheUnavailableError, _cache_unavailable)


# Documented on every route so that clients (and schemathesis) know the shape.
def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"model": ErrorBody, "description": HTTPStatus(status).phrase}
        for status in statuses
    }
