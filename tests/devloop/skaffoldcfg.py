"""skaffold.yaml as skaffold reads it: profiles applied, Helm values resolved.

skaffold itself cannot be built or downloaded here, so these helpers do the parts of its
work that the tests check: applying a profile (field replacement, then JSON patches, as
skaffold's profile code does) and computing the values it hands to `helm` for a release
(values files in order, then `setValues`, then `setValueTemplates`).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jsonpatch
import jsonschema  # type: ignore[import-untyped]
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SKAFFOLD_YAML = REPO_ROOT / "skaffold.yaml"
SCHEMA_VERSION = "skaffold/v4beta13"
SCHEMA_FILE = Path(__file__).parent / "data" / "skaffold-v4beta13.json"
# The profiles skaffold.yaml must offer; None is skaffold without --profile.
PROFILES: tuple[str | None, ...] = (None, "dev", "prod")
# The real node's profiles: they turn on by themselves for its kube context, after the
# profiles above that a command activates and before those named with -p.
REALNODE_CONTEXT = "kwok-fastship"
REALNODE_PROFILES = ("realnode", "realnode-dev")


def load(path: Path = SKAFFOLD_YAML) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert len(docs) == 1, f"{path.name}: expected one config document, found {len(docs)}"
    config = docs[0]
    assert isinstance(config, dict), f"{path.name}: the config is not a mapping"
    return config


@cache
def schema() -> dict[str, Any]:
    loaded = json.loads(SCHEMA_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def schema_errors(config: dict[str, Any]) -> list[str]:
    """Problems of ``config`` against skaffold's published schema, each naming its place.

    The schema's top level is an ``anyOf`` over every apiVersion's shape, so the
    errors of the best-matching branch are reported rather than "not valid under any".
    """
    validator = jsonschema.Draft7Validator(schema())
    problems = []
    for error in validator.iter_errors(config):
        best = jsonschema.exceptions.best_match([error])
        while best.context:
            best = jsonschema.exceptions.best_match(best.context)
        where = "/".join(str(p) for p in best.absolute_path) or "(top level)"
        problems.append(f"{where}: {best.message}")
    return problems


def profile(config: dict[str, Any], name: str) -> dict[str, Any]:
    for candidate in config.get("profiles") or []:
        if candidate["name"] == name:
            assert isinstance(candidate, dict)
            return candidate
    raise AssertionError(f"skaffold.yaml has no profile {name!r}")


def effective(config: dict[str, Any], name: str | Sequence[str] | None) -> dict[str, Any]:
    """The config with profile ``name`` applied (or several, in the order given).

    skaffold overlays a profile's pipeline fields first (merging structs field by field)
    and then applies its JSON patches, `replace` when no op is given. skaffold.yaml's
    profiles use patches only, which is all this models: a profile that sets pipeline
    fields fails here rather than being merged differently from skaffold.
    """
    result = copy.deepcopy(config)
    result.pop("profiles", None)
    if name is None:
        return result
    for one in [name] if isinstance(name, str) else name:
        prof = profile(config, one)
        fields = set(prof) - {"name", "activation", "requiresAllActivations", "patches"}
        assert not fields, (
            f"profile {one} sets {sorted(fields)}: the tests model profiles made of patches only"
        )
        patches = [{"op": "replace", **p} for p in prof.get("patches") or []]
        patched = jsonpatch.apply_patch(result, patches)
        assert isinstance(patched, dict)
        result = patched
    return result


def release(config: dict[str, Any]) -> dict[str, Any]:
    releases = config["deploy"]["helm"]["releases"]
    assert len(releases) == 1, f"expected one Helm release, found {len(releases)}"
    rel = releases[0]
    assert isinstance(rel, dict)
    return rel


def template_name(image: str) -> str:
    """An artifact's name inside skaffold's templates (`/ - . :` become `_`)."""
    return re.sub(r"[/\-.:]", "_", image)


def expand(template: str, variables: dict[str, str]) -> str:
    """Expand ``{{.NAME}}`` the way skaffold's Go templates do; unknown names fail."""

    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        assert key in variables, (
            f"template {template!r} uses {{{{.{key}}}}}, which skaffold does not set"
        )
        return variables[key]

    expanded = re.sub(r"\{\{\s*\.([A-Za-z0-9_]+)\s*\}\}", one, template)
    assert "{{" not in expanded, f"template {template!r} has a construct these tests do not expand"
    return expanded


def image_variables(config: dict[str, Any], repo: str, tag: str) -> dict[str, str]:
    """What skaffold sets for each artifact after a build with this repo and tag."""
    variables: dict[str, str] = {}
    for artifact in config["build"]["artifacts"]:
        name = template_name(artifact["image"])
        variables.update(
            {
                f"IMAGE_REPO_{name}": repo,
                f"IMAGE_TAG_{name}": tag,
                f"IMAGE_FULLY_QUALIFIED_{name}": f"{repo}:{tag}",
            }
        )
    return variables


def set_path(values: dict[str, Any], dotted: str, value: Any) -> None:
    """Helm's `--set a.b=c` (without list indexes, which skaffold.yaml does not use)."""
    assert "[" not in dotted, f"{dotted}: list indexes are not handled here"
    keys = dotted.split(".")
    node = values
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        assert isinstance(node, dict), f"{dotted}: {key} is not a mapping"
    node[keys[-1]] = value


def helm_value_files(config: dict[str, Any], repo: str, tag: str, tmp: Path) -> list[Path]:
    """The values skaffold passes to helm for the release, as files in helm's order.

    skaffold passes `--set` for setValues and for the expanded setValueTemplates, and
    `-f` for each values file; helm applies `--set` over the files whatever the order
    on the command line, so the `--set` values become one last file here.
    """
    rel = release(config)
    files = []
    for name in rel.get("valuesFiles") or []:
        path = (SKAFFOLD_YAML.parent / name).resolve()
        assert path.is_file(), f"valuesFiles entry {name} does not exist"
        files.append(path)
    overrides: dict[str, Any] = {}
    for key, value in (rel.get("setValues") or {}).items():
        set_path(overrides, key, value)
    variables = image_variables(config, repo, tag)
    for key, template in (rel.get("setValueTemplates") or {}).items():
        set_path(overrides, key, expand(str(template), variables))
    if overrides:
        extra = tmp / "skaffold-set-values.yaml"
        extra.write_text(yaml.safe_dump(overrides, sort_keys=False))
        files.append(extra)
    return files
