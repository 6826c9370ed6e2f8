from __future__ import annotations

import re
from pathlib import Path

from app.core.config import settings_reference

ROOT = Path(__file__).resolve().parents[2]


def test_readme_settings_table_matches_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(
        r"<!-- settings-reference:start -->\n(.*?)\n<!-- settings-reference:end -->", readme, re.S
    )
    assert match, "README.md lost its settings-reference markers"
    assert match.group(1).strip() == settings_reference().strip(), (
        "README.md's settings table is out of date: run `make docs`"
    )
