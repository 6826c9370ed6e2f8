"""The ceiling: a pure-ASGI app with no framework, no database and no middleware.

It answers ``/health`` with ``{"status":"ok"}`` and ``/items`` with a 100-item JSON
list built with ``json.dumps`` on every request: the fastest the same uvicorn
settings can serve responses of the same size. fastship's numbers are quoted as
ratios to these.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

_NOW = datetime.now(UTC).isoformat()
_OWNER = str(uuid.uuid4())
_ITEMS = [
    {
        "id": str(uuid.uuid4()),
        "owner_id": _OWNER,
        "name": f"item {i}",
        "description": "a benchmark item with a short description",
        "price": f"{i}.99",
        "tags": ["bench", "load"],
        "created_at": _NOW,
        "updated_at": _NOW,
    }
    for i in range(100)
]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/items":
        body = json.dumps({"items": _ITEMS, "total": 100, "limit": 100, "offset": 0}).encode()
    else:
        body = json.dumps({"status": "ok"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
