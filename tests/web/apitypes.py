"""The web interface's API types (web/src/api/schema.d.ts), generated from the
service's own OpenAPI document with openapi-typescript.

`make web-api` (python -m tests.web.apitypes) rewrites them; test_api_types.py fails
when the committed file differs from what the current API generates.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
SCHEMA_TYPES = WEB / "src" / "api" / "schema.d.ts"


def openapi_document() -> str:
    """/openapi.json of the service as this code builds it, in a stable order."""
    from app.core.config import Settings
    from app.main import create_app

    app = create_app(Settings.model_validate({"environment": "development"}))
    return json.dumps(app.openapi(), indent=2, sort_keys=True)


def generate() -> str:
    """The TypeScript that openapi-typescript (from web/node_modules) makes of it."""
    with tempfile.TemporaryDirectory(prefix="fastship-openapi-") as tmp:
        source = Path(tmp) / "openapi.json"
        target = Path(tmp) / "schema.d.ts"
        source.write_text(openapi_document())
        command = ["npm", "exec", "--offline", "--", "openapi-typescript"]
        subprocess.run(
            [*command, str(source), "-o", str(target)],
            cwd=WEB,
            check=True,
            capture_output=True,
            text=True,
        )
        return target.read_text()


def main() -> None:
    SCHEMA_TYPES.write_text(generate())
    print(f"wrote {SCHEMA_TYPES.relative_to(REPO)}", file=sys.stderr)


if __name__ == "__main__":
    main()
