"""The chart README's values table, made from the ``# --`` comments of values.yaml.

A key documented with ``# -- text`` (continued on following ``#`` lines) is one row of
the table, with its default; its children are part of that row. Every other key must
be a map whose keys are all documented. ``python -m tests.chart.valuesdoc`` rewrites the
table in charts/fastship/README.md; tests/chart/test_docs.py fails when it is stale.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART_DIR = Path(__file__).resolve().parents[2] / "charts" / "fastship"
VALUES = CHART_DIR / "values.yaml"
README = CHART_DIR / "README.md"
SCHEMA = CHART_DIR / "values.schema.json"
START = "<!-- values-table:start -->"
END = "<!-- values-table:end -->"

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")


@dataclass(frozen=True)
class ValueDoc:
    key: str
    """Dotted path, e.g. ``image.repository``."""
    default: Any
    description: str


def _lookup(values: Any, path: list[str]) -> Any:
    for part in path:
        values = values[part]
    return values


def parse(path: Path = VALUES) -> list[ValueDoc]:
    """Documented keys of a values file, in file order."""
    text = path.read_text()
    values = yaml.safe_load(text) or {}
    docs: list[ValueDoc] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, inside a documented key)
    pending: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped.removeprefix("# --").strip()]
            continue
        if stripped.startswith("#"):
            if pending is not None:
                pending.append(stripped.removeprefix("#").strip())
            continue
        if not stripped:
            pending = None
            continue
        match = _KEY.match(line)
        if not match:  # list items and flow values
            pending = None
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        inside = bool(stack and stack[-1][2])
        if inside:
            stack.append((indent, match["key"], True))
            pending = None
            continue
        keys = [k for _, k, _ in stack] + [match["key"]]
        documented = pending is not None
        if pending is not None:
            docs.append(ValueDoc(".".join(keys), _lookup(values, keys), " ".join(pending).strip()))
        stack.append((indent, match["key"], documented))
        pending = None
    return docs


def undocumented(path: Path = VALUES) -> list[str]:
    """Keys that are neither documented nor maps of documented keys."""
    values = yaml.safe_load(path.read_text()) or {}
    documented = {d.key for d in parse(path)}
    missing: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if dotted in documented:
                continue
            if isinstance(value, dict) and value:
                walk(value, f"{dotted}.")
            else:
                missing.append(dotted)

    walk(values, "")
    return missing


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(path: Path = VALUES) -> str:
    """The Markdown values table."""
    rows = ["| Key | Default | Description |", "|---|---|---|"]
    for doc in parse(path):
        default = json.dumps(doc.default, separators=(",", ":"))
        rows.append(f"| `{doc.key}` | `{_cell(default)}` | {_cell(doc.description)} |")
    return "\n".join(rows) + "\n"


def readme_table(readme: Path = README) -> str:
    """The table currently between the markers of the README."""
    text = readme.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme} lacks the markers {START} and {END}")
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def write(readme: Path = README, values: Path = VALUES) -> None:
    text = readme.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{table(values)}{END}{tail}")


def write_schema_descriptions(schema_path: Path = SCHEMA, values: Path = VALUES) -> None:
    """Copy each documented key's description into the schema (which must type the key)."""
    schema = json.loads(schema_path.read_text())
    for doc in parse(values):
        node = schema
        for part in doc.key.split("."):
            if part not in node.get("properties", {}):
                raise SystemExit(f"{doc.key} is not typed in {schema_path}: add it there")
            node = node["properties"][part]
        node["description"] = doc.description
    schema_path.write_text(json.dumps(schema, indent=2) + "\n")


if __name__ == "__main__":
    problems = undocumented()
    if problems:
        sys.exit("values.yaml keys without a '# --' comment: " + ", ".join(problems))
    write()
    write_schema_descriptions()
    print(f"wrote the values table of {README} and the descriptions of {SCHEMA}")
