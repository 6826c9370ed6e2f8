"""``python -m tests.app.migrate_runner VERSIONS_DIR ARGS...``: ``python -m app ARGS...``
with the revisions of VERSIONS_DIR added to the application's own (a test revision)."""

from __future__ import annotations

import sys
from pathlib import Path

from app.cli import main
from app.core import schema

if __name__ == "__main__":
    schema.add_version_location(Path(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
