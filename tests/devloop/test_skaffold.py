"""skaffold.yaml: valid for its schema version, and consistent with the image and chart.

The config is checked against skaffold's own published JSON schema for its apiVersion
(tests/devloop/data, source in the README there), with each profile applied, without a
cluster. skaffold itself runs it in tests/realnode/test_skaffold.py.
"""

from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest

from tests.devloop import skaffoldcfg
from tests.devloop.skaffoldcfg import PROFILES, REPO_ROOT, effective, load, release, schema_errors

DOCKERFILE = REPO_ROOT / "Dockerfile"
DEV_DOCKERFILE = REPO_ROOT / "k8s" / "skaffold" / "Dockerfile.dev"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return load()


def test_schema_file_is_the_one_for_this_api_version(config: dict[str, Any]) -> None:
    # The schema does not pin apiVersion itself: a new apiVersion needs its own schema
    # file (tests/devloop/data/README.md says where it comes from).
    assert config["apiVersion"] == skaffoldcfg.SCHEMA_VERSION, (
        f"skaffold.yaml is {config['apiVersion']}, the schema in tests/devloop/data is "
        f"{skaffoldcfg.SCHEMA_VERSION}"
    )
    assert config["kind"] == "Config"
    readme = (skaffoldcfg.SCHEMA_FILE.parent / "README.md").read_text()
    digest = hashlib.sha256(skaffoldcfg.SCHEMA_FILE.read_bytes()).hexdigest()
    assert digest in readme, "the schema file differs from the one README.md describes"


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p or "no-profile")
def test_valid_against_skaffold_schema(config: dict[str, Any], profile: str | None) -> None:
    problems = schema_errors(config if profile is None else effective(config, profile))
    assert not problems, "skaffold.yaml breaks skaffold's schema:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        # a misspelt key: skaffold's schema allows no unknown properties
        (lambda c: release(c).update(chartpath=release(c).pop("chartPath")), "chartpath"),
        (lambda c: c["portForward"][0].update(localPort="8000"), "'8000' is not of type"),
        (lambda c: release(c).pop("name"), "'name' is a required property"),
    ],
    ids=["misspelt-key", "wrong-type", "missing-required"],
)
def test_schema_rejects_broken_configs(config: dict[str, Any], mutate: Any, expected: str) -> None:
    broken = copy.deepcopy(config)
    mutate(broken)
    problems = schema_errors(broken)
    assert problems, "a broken config passed the schema"
    assert any(expected in p for p in problems), problems


def test_every_profile_is_offered_and_dev_is_the_dev_command(config: dict[str, Any]) -> None:
    names = [p["name"] for p in config["profiles"]]
    assert names == [p for p in PROFILES if p] + list(skaffoldcfg.REALNODE_PROFILES), (
        "the real node's profiles come last: skaffold applies auto-activated profiles in "
        "the order of the file"
    )
    dev = skaffoldcfg.profile(config, "dev")
    assert {"command": "dev"} in dev["activation"], "`skaffold dev` should pick the dev profile"


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p or "no-profile")
def test_image_values_come_from_the_one_artifact(
    config: dict[str, Any], profile: str | None
) -> None:
    eff = effective(config, profile)
    artifacts = eff["build"]["artifacts"]
    assert [a["image"] for a in artifacts] == ["fastship"], "one image for every role"
    name = skaffoldcfg.template_name("fastship")
    templates = release(eff)["setValueTemplates"]
    assert templates == {
        "image.repository": f"{{{{.IMAGE_REPO_{name}}}}}",
        "image.tag": f"{{{{.IMAGE_TAG_{name}}}}}",
    }
    rel = release(eff)
    assert rel["chartPath"] == "charts/fastship"
    assert (REPO_ROOT / rel["chartPath"] / "Chart.yaml").is_file()
    for values_file in rel["valuesFiles"]:
        assert (REPO_ROOT / values_file).is_file(), values_file


@pytest.mark.parametrize("profile", [None, "prod"], ids=lambda p: p or "no-profile")
def test_release_images_build_from_the_root_dockerfile(
    config: dict[str, Any], profile: str | None
) -> None:
    (artifact,) = effective(config, profile)["build"]["artifacts"]
    assert artifact.get("context", ".") == "."
    assert artifact["docker"]["dockerfile"] == "Dockerfile"
    assert "sync" not in artifact, "only the dev profile copies files into running pods"
    assert DOCKERFILE.is_file()


def _dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        pairs.append((word.upper(), rest.strip()))
    return pairs


def test_dev_profile_builds_on_the_root_image_and_syncs_into_its_package(
    config: dict[str, Any],
) -> None:
    (artifact,) = effective(config, "dev")["build"]["artifacts"]
    dev_file = REPO_ROOT / artifact.get("context", ".") / artifact["docker"]["dockerfile"]
    assert dev_file == DEV_DOCKERFILE

    # The hook builds the root Dockerfile under the tag that the dev Dockerfile starts from.
    (hook,) = artifact["hooks"]["before"]
    command = " ".join(hook["command"])
    base = artifact["docker"]["buildArgs"]["BASE"]
    assert f"--tag {base} " in command
    assert command.endswith('"$SKAFFOLD_BUILD_CONTEXT"')
    dev = _dockerfile_instructions(DEV_DOCKERFILE)
    assert ("ARG", f"BASE={base}") in dev
    assert dev[1] == ("FROM", "${BASE}")

    # Where the image keeps the `app` package: sync must write there, writable by the
    # user the container runs as, and the server must reload.
    root = _dockerfile_instructions(DOCKERFILE)
    workdirs = [args for word, args in root if word == "WORKDIR"]
    package_dir = workdirs[-1]
    users = [args for word, args in root if word == "USER"]
    assert any(f"--target {package_dir} " in args for word, args in root if word == "RUN"), (
        f"the root Dockerfile no longer installs the packages into {package_dir}"
    )
    (rule,) = artifact["sync"]["manual"]
    assert rule == {"src": "app/**/*.py", "dest": package_dir}
    assert ("COPY", f"--chown={users[-1]} app {package_dir}/app") in dev
    assert dev[-1] == ("CMD", '["python", "-m", "app", "serve", "--reload"]')
    assert ("USER", users[-1]) in dev, "the dev image must run as the same user as the root image"


def test_port_forwards_bind_loopback_and_name_the_release_services(config: dict[str, Any]) -> None:
    forwards = {f["localPort"]: f for f in config["portForward"]}
    assert set(forwards) == {8000, 15432}
    for forward in forwards.values():
        assert forward["resourceType"] == "service"
        assert forward.get("address", "127.0.0.1") == "127.0.0.1", "never beyond loopback"
        assert forward["namespace"] == release(config)["namespace"]
    # that these Services exist with these ports is checked on the rendered chart
    # (test_render.py)


REALNODE_RUNS = {
    "run": ["realnode"],
    "run -p prod": ["realnode", "prod"],
    "dev": ["dev", "realnode", "realnode-dev"],
    "dev -p prod": ["dev", "realnode", "realnode-dev", "prod"],
}


def test_realnode_profiles_turn_on_for_the_node_context_only(config: dict[str, Any]) -> None:
    context = skaffoldcfg.REALNODE_CONTEXT
    assert skaffoldcfg.profile(config, "realnode")["activation"] == [{"kubeContext": context}]
    assert skaffoldcfg.profile(config, "realnode-dev")["activation"] == [
        {"kubeContext": context, "command": "dev"}
    ]
    for name in PROFILES:
        if name:
            activation = skaffoldcfg.profile(config, name).get("activation") or []
            assert all("kubeContext" not in a for a in activation), name


@pytest.mark.parametrize("command", REALNODE_RUNS)
def test_realnode_builds_with_podman_without_a_registry(
    config: dict[str, Any], command: str
) -> None:
    profiles = REALNODE_RUNS[command]
    eff = effective(config, profiles)
    assert schema_errors(eff) == []
    assert eff["build"]["local"] == {"push": False, "useBuildkit": False}
    (artifact,) = eff["build"]["artifacts"]
    assert set(artifact) == {"image", "context", "custom", "sync"}, "no Docker build, no hooks"
    script = "k8s/skaffold/podman-build.sh"
    expected = f"{script} --dev" if "dev" in profiles else script
    assert artifact["custom"]["buildCommand"] == expected
    assert (REPO_ROOT / script).stat().st_mode & 0o111, f"{script} must be executable"
    assert artifact["sync"] == {"manual": [{"src": "app/**/*.py", "dest": "/opt/fastship"}]}
    values = release(eff)["valuesFiles"]
    assert values[-1 if "prod" not in profiles else -2] == "k8s/skaffold/values-realnode.yaml"
    assert ("k8s/skaffold/values-dev.yaml" in values) == ("dev" in profiles)
    assert ("k8s/skaffold/values-prod.yaml" in values) == ("prod" in profiles)
    for values_file in values:
        assert (REPO_ROOT / values_file).is_file(), values_file
