"""The web interface's typed API client matches the API: web/src/api/schema.d.ts is what
openapi-typescript makes of the service's current /openapi.json. An API change without
`make web-api` fails here; after it, code of the interface that no longer fits the API
fails the interface's build (`tsc` in `make web-build`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.web.apitypes import SCHEMA_TYPES, WEB, generate


@pytest.mark.usefixtures("web_dist")
def test_committed_api_types_match_the_api() -> None:
    fresh = generate()
    assert fresh == SCHEMA_TYPES.read_text(), (
        "web/src/api/schema.d.ts differs from the current API: run `make web-api`, "
        "then fix what `make web-build` says about the interface"
    )
    assert '"/api/v1/items/{item_id}"' in fresh


def _typecheck(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WEB / "node_modules" / ".bin" / "tsc"), "--noEmit", "-p", str(tree)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.usefixtures("web_dist")
def test_an_api_change_breaks_the_interface_build(tmp_path: Path) -> None:
    """Items whose `price` is renamed in the API: the interface's code stops compiling
    where it reads the price."""
    tree = tmp_path / "web"
    tree.mkdir()
    shutil.copytree(WEB / "src", tree / "src")
    for name in ("tsconfig.json", "vite.config.ts"):
        shutil.copy2(WEB / name, tree / name)
    (tree / "node_modules").symlink_to(WEB / "node_modules")
    unchanged = _typecheck(tree)
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr

    types = tree / "src" / "api" / "schema.d.ts"
    original = types.read_text()
    # ItemPublic's price, as the API would describe a field renamed to `cost`.
    renamed = original.replace("price: string;", "cost: string;", 1)
    assert renamed != original
    types.write_text(renamed)
    broken = _typecheck(tree)
    assert broken.returncode != 0
    assert "src/pages/Items.tsx" in broken.stdout
    assert "'price' does not exist" in broken.stdout
