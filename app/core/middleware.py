"""The outermost middleware: request id, body size limit, security headers, the access
log, metrics, and the last line of defence that turns an unhandled exception into a
JSON 500. Written as plain ASGI: it runs on every request, so it avoids the cost of
Starlette's BaseHTTPMiddleware.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core import metrics
from app.core.errors import AppError
from app.core.logging import request_id_var

log = logging.getLogger("fastship.access")
error_log = logging.getLogger("fastship.errors")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_DOCS_PATHS = ("/docs", "/redoc")

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
]
_CSP_NAME = b"content-security-policy"
_API_CSP = (_CSP_NAME, b"default-src 'none'; frame-ancestors 'none'")
# The interactive docs load Swagger UI and ReDoc from their CDN.
_DOCS_CSP = (
    b"content-security-policy",
    b"default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    b"img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    b"font-src 'self' https://fonts.gstatic.com; worker-src blob:; frame-ancestors 'none'",
)


class BodyTooLargeError(AppError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"Request body larger than {limit} bytes",
            code="payload_too_large",
        )


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        access_log: bool = True,
        route_templates: Mapping[int | str, str] | None = None,
    ) -> None:
        self.app = app
        self.route_templates = route_templates or {}
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False
        path = _app_path(scope)
        api = path.startswith("/api/")
        csp = _DOCS_CSP if path.startswith(_DOCS_PATHS) else _API_CSP
        headers_out = [*_SECURITY_HEADERS]
        if api:
            headers_out.append((b"cache-control", b"no-store"))
        headers_out.append((b"x-request-id", request_id.encode()))

        declared = _content_length(scope)
        metrics.IN_FLIGHT.inc()
        try:
            if declared is not None and declared > self.max_body_bytes:
                status = 413
                await _send_json(
                    send,
                    413,
                    _error(
                        413,
                        "payload_too_large",
                        f"Request body larger than {self.max_body_bytes} bytes",
                        request_id,
                    ),
                    [csp, *headers_out],
                )
                response_started = True
                return

            received = 0
            limit = self.max_body_bytes

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise BodyTooLargeError(limit)
                return message

            async def send_with_headers(message: Message) -> None:
                nonlocal status, response_started
                if message["type"] == "http.response.start":
                    status = message["status"]
                    response_started = True
                    headers = message.get("headers", [])
                    # Outside the API a response may bring its own policy (the web
                    # interface's page): it is kept instead of the default one.
                    if not api and any(name == _CSP_NAME for name, _ in headers):
                        message["headers"] = [*headers, *headers_out]
                    else:
                        message["headers"] = [*headers, csp, *headers_out]
                await send(message)

            await self.app(scope, limited_receive, send_with_headers)
        except Exception:
            error_log.exception("unhandled error")
            if not response_started:
                status = 500
                await _send_json(
                    send,
                    500,
                    _error(500, "internal_error", "Internal error", request_id),
                    [csp, *headers_out],
                )
                response_started = True
            # After the response started there is nothing left to tell the client.
        finally:
            metrics.IN_FLIGHT.dec()
            elapsed = time.perf_counter() - started
            route = _route_template(scope, self.route_templates)
            method: str = scope["method"]
            metrics.observe_request(method, route, status, elapsed)
            if self.access_log:
                client = scope.get("client")
                log.info(
                    "request",
                    extra={
                        "method": method,
                        "path": path,
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                        "client": client[0] if client else None,
                    },
                )
            request_id_var.reset(token)


class CompressWhenAccepted:
    """Starlette's GZipMiddleware, entered only by requests that accept gzip. The
    others, most API clients, skip its per-request work; their responses still say
    `Vary: Accept-Encoding`, as the compressed ones do."""

    def __init__(self, app: ASGIApp, *, minimum_size: int) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=minimum_size)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _accepts_gzip(scope):
            await self.gzip(scope, receive, send)
            return

        async def send_with_vary(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), _VARY]
            await send(message)

        await self.app(scope, receive, send_with_vary)


_VARY = (b"vary", b"Accept-Encoding")


def _accepts_gzip(scope: Scope) -> bool:
    return any(
        name == b"accept-encoding" and b"gzip" in value.lower() for name, value in scope["headers"]
    )


def route_templates(routes: Any) -> dict[int | str, str]:
    """Full path templates ("/api/v1/items/{item_id}") by route object, for metric
    labels: routes inside included routers only know their own part of the path.

    Paths without parameters are also listed by themselves: Starlette's plain routes
    (the docs pages, the OpenAPI document) do not record themselves in the scope."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI versions that flatten included routes
        contexts = [(route, getattr(route, "path_format", None)) for route in routes]
    else:
        contexts = [(ctx.original_route, ctx.path_format) for ctx in iter_route_contexts(routes)]
    templates: dict[int | str, str] = {}
    for route, path_format in contexts:
        if isinstance(path_format, str):
            templates[id(route)] = path_format
            if "{" not in path_format:
                templates[path_format] = path_format
    return templates


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            # Anything else is replaced, so that a client cannot inject into the logs.
            return candidate if _REQUEST_ID.match(candidate) else None
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _app_path(scope: Scope) -> str:
    """The path as the app's routes see it: behind a proxy, without FASTSHIP_ROOT_PATH
    (the ASGI path carries it)."""
    path: str = scope["path"]
    return path.removeprefix(scope.get("root_path", ""))


def _route_template(scope: Scope, templates: Mapping[int | str, str]) -> str:
    route = scope.get("route")
    if route is None:
        template = templates.get(_app_path(scope))
    else:
        template = templates.get(id(route)) or getattr(route, "path", None)
    # Unmatched paths share one label, so that scanners cannot blow up cardinality.
    return template if isinstance(template, str) else "<unmatched>"


def _error(status: int, code: str, message: str, request_id: str) -> dict[str, Any]:
    return {"code": code, "message": message, "details": None, "request_id": request_id}


async def _send_json(
    send: Send, status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]]
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
