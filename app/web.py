"""The web interface: the files that `make web-build` writes to web/dist (see web/README.md),
served by the service itself at its root path. The API stays under /api, the probes, the
metrics and the docs where they are.

Only two routes: the page at `/` (the interface routes in the URL's fragment, `#/items`,
so no other server path is needed) and its hashed files under `/assets/`.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse, HTMLResponse

from app.core.errors import AppError

# In the repository and in the image alike: web/dist beside the `app` package.
WEB_DIST = Path(__file__).resolve().parent.parent / "web" / "dist"

# What the interface needs and nothing more: its own scripts, style sheets and API;
# data: images for the icons inside the style sheet. No inline script or style, no
# eval, no other origin, no framing, no <base> and forms posting only here.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
    "require-trusted-types-for 'script'"
)

# Vite names every file it writes by its content hash: a name never changes meaning.
_ASSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_IMMUTABLE = "public, max-age=31536000, immutable"

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fastship</title></head>
<body><main>
<h1>The web interface is not built</h1>
<p>This service serves its web interface from <code>web/dist</code>, which is missing.
Build it with <code>make web-build</code> (needs Node.js 20.19 or later and npm), then
reload this page. <code>make run</code> builds it when npm is installed.</p>
<p>The API works without it: see <a href="docs">the interactive documentation</a>.</p>
</main></body></html>
"""


def create_router(dist: Path | None = None) -> APIRouter:
    """The interface's routes, reading `dist` (default: web/dist) at each request: a
    rebuild shows without a restart."""
    dist = dist or WEB_DIST
    router = APIRouter(include_in_schema=False)
    assets = dist / "assets"
    headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY}

    @router.api_route("/", methods=["GET", "HEAD"])
    def index() -> Response:
        try:
            page = (dist / "index.html").read_bytes()
        except FileNotFoundError:
            return HTMLResponse(NOT_BUILT, headers={**headers, "Cache-Control": "no-store"})
        # Revalidated each time, so a new build's asset names are picked up at once.
        return HTMLResponse(page, headers={**headers, "Cache-Control": "no-cache"})

    @router.get("/assets/{name}")
    def asset(name: str) -> Response:
        path = assets / name
        if not _ASSET_NAME.match(name) or not path.is_file():
            raise AppError(404, "Not found")
        return FileResponse(path, headers={**headers, "Cache-Control": _IMMUTABLE})

    return router
