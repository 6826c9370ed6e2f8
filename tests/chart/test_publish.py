"""Publishing: chart-testing's lint checks, Artifact Hub metadata, `helm package --sign`,
`helm verify`, a push to a local OCI registry and `helm install oci://` from it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yamale
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

from tests.chart.conftest import CHART, parse_objects
from tests.chart.test_render import IMAGE
from tests.support.kube import Kube, tools_bin
from tests.support.waiting import free_port, wait_until

LINT = Path(__file__).parent / "lint"
CHARTS = (CHART, CHART.parent / "fastship-crds")


def yaml_files(chart: Path) -> list[Path]:
    """The YAML (not template) files of a chart, as chart-testing lints them."""
    files = [chart / "Chart.yaml", chart / "values.yaml"]
    for sub in ("files", "crds"):
        if (chart / sub).is_dir():
            files += sorted((chart / sub).glob("*.yaml"))
    return files


def yamllint_problems(text: str, path: Path) -> list[str]:
    config = YamlLintConfig(file=str(LINT / "yamllint.yaml"))
    return [f"{path}:{p.line}: {p.message}" for p in linter.run(text, config, str(path))]


@pytest.mark.parametrize("chart", CHARTS, ids=lambda c: c.name)
def test_yamllint(chart: Path) -> None:
    problems = [p for f in yaml_files(chart) for p in yamllint_problems(f.read_text(), f)]
    assert problems == []


def test_yamllint_finds_problems() -> None:
    bad = "key: value   \nlist:\n- a\n-  b\nkey: again\n"
    problems = yamllint_problems(bad, Path("bad.yaml"))
    assert any("trailing spaces" in p for p in problems), problems
    assert any("duplication of key" in p for p in problems), problems


def chart_yaml_errors(data: dict[str, Any]) -> list[str]:
    schema = yamale.make_schema(str(LINT / "chart-schema.yaml"))
    try:
        yamale.validate(schema, [(data, "Chart.yaml")])
    except yamale.YamaleError as exc:
        return [str(e) for result in exc.results for e in result.errors]
    return []


@pytest.mark.parametrize("chart", CHARTS, ids=lambda c: c.name)
def test_chart_yaml_schema(chart: Path) -> None:
    data = yaml.safe_load((chart / "Chart.yaml").read_text())
    assert chart_yaml_errors(data) == []


def test_chart_yaml_schema_finds_problems() -> None:
    data = yaml.safe_load((CHART / "Chart.yaml").read_text())
    broken = {**data, "maintainers": [{"name": "x"}], "home": "http://insecure"}
    errors = chart_yaml_errors(broken)
    assert any("maintainers.0.email" in e for e in errors), errors
    assert any("home" in e for e in errors), errors


def annotation_list(chart: Path, key: str) -> list[dict[str, Any]]:
    annotations = yaml.safe_load((chart / "Chart.yaml").read_text())["annotations"]
    value = yaml.safe_load(annotations[key])
    assert isinstance(value, list)
    return value


def test_artifact_hub_annotations_match_the_chart(render: Any) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    annotations = chart["annotations"]
    assert annotations["artifacthub.io/license"] == "MIT"
    assert (CHART.parents[1] / "LICENSE").read_text().startswith("MIT License")
    # The images the default values run.
    rendered = render()
    images = set()
    for obj in rendered.objects:
        spec = obj.get("spec", {}).get("template", {}).get("spec") or obj.get("spec", {})
        for c in [*spec.get("initContainers", []), *spec.get("containers", [])]:
            images.add(c["image"])
    listed = {i["image"] for i in annotation_list(CHART, "artifacthub.io/images")}
    assert listed == images == {IMAGE, "postgres:17.6"}
    # The CRDs of crds/.
    names = {yaml.safe_load(p.read_text())["metadata"]["name"] for p in (CHART / "crds").glob("*")}
    for chart_dir in CHARTS:
        crds = annotation_list(chart_dir, "artifacthub.io/crds")
        assert {c["name"] for c in crds} == names
    for change in annotation_list(CHART, "artifacthub.io/changes"):
        assert change["kind"] in {"added", "changed", "deprecated", "removed", "fixed", "security"}
    assert all(
        link["url"].startswith("https://")
        for link in annotation_list(CHART, "artifacthub.io/links")
    )


# --- packaging, signing, an OCI registry ------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local OCI registry (CNCF distribution) on loopback; yields host:port."""
    binary = tools_bin() / "registry"
    if not binary.exists():
        pytest.fail(f"registry not found at {binary}: run `make tools`", pytrace=False)
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    (root / "config.yml").write_text(yaml.safe_dump(config))
    log = (root / "registry.log").open("w")
    proc = subprocess.Popen(
        [str(binary), "serve", str(root / "config.yml")], stdout=log, stderr=subprocess.STDOUT
    )

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError((root / "registry.log").read_text())
        try:
            return httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(up, timeout=30, interval=0.2, what="the local OCI registry")
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """A throwaway OpenPGP key without passphrase, exported as Helm reads keyrings."""
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    uid = "fastship chart test <chart-test@fastship.dev>"
    gpg = shutil.which("gpg")
    if gpg is None:
        pytest.fail("gpg not found: install Debian's gnupg", pytrace=False)

    def run(*args: str) -> bytes:
        return subprocess.run(
            [gpg, "--batch", *args], env=env, capture_output=True, check=True, timeout=120
        ).stdout

    run("--passphrase", "", "--quick-gen-key", uid, "rsa2048", "sign", "never")
    (home / "secring.gpg").write_bytes(run("--export-secret-keys"))
    (home / "pubring.gpg").write_bytes(run("--export"))
    return {"uid": uid, "secret": home / "secring.gpg", "public": home / "pubring.gpg"}


def helm_env(kube: Kube, tmp: Path) -> dict[str, str]:
    return {**kube.env, "HELM_REGISTRY_CONFIG": str(tmp / "registry.json")}


def run_helm(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tools_bin() / "helm"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_signed_package_pushed_to_oci_and_installed_from_it(
    kube: Kube,
    namespace: str,
    registry: str,
    signing_key: dict[str, Any],
    tmp_path: Path,
) -> None:
    env = helm_env(kube, tmp_path)
    out = tmp_path / "packages"
    packaged = run_helm(
        env, "package", str(CHART), "--destination", str(out),
        "--sign", "--key", signing_key["uid"], "--keyring", str(signing_key["secret"]),
    )  # fmt: skip
    assert packaged.returncode == 0, packaged.stderr
    package = out / "fastship-0.1.0.tgz"
    assert (out / "fastship-0.1.0.tgz.prov").is_file()

    verified = run_helm(env, "verify", str(package), "--keyring", str(signing_key["public"]))
    assert verified.returncode == 0, verified.stderr
    assert "Signed by: fastship chart test" in verified.stdout
    # A package changed after signing fails verification.
    tampered = tmp_path / "tampered" / "fastship-0.1.0.tgz"
    tampered.parent.mkdir()
    tampered.write_bytes(package.read_bytes() + b"\0")
    shutil.copy(out / "fastship-0.1.0.tgz.prov", tampered.parent)
    refused = run_helm(env, "verify", str(tampered), "--keyring", str(signing_key["public"]))
    assert refused.returncode != 0
    assert "sha256 sum does not match" in refused.stderr

    repo = f"oci://{registry}/charts"
    pushed = run_helm(env, "push", str(package), repo, "--plain-http")
    assert pushed.returncode == 0, pushed.stderr
    assert "Digest: sha256:" in pushed.stdout + pushed.stderr
    crds = run_helm(env, "package", str(CHART.parent / "fastship-crds"), "-d", str(out))
    assert crds.returncode == 0, crds.stderr
    pushed = run_helm(env, "push", str(out / "fastship-crds-0.1.0.tgz"), repo, "--plain-http")
    assert pushed.returncode == 0, pushed.stderr

    crds_chart = run_helm(
        env, "show", "chart", f"{repo}/fastship-crds", "--version", "0.1.0", "--plain-http"
    )
    assert yaml.safe_load(crds_chart.stdout)["name"] == "fastship-crds", crds_chart.stderr
    shown = run_helm(env, "show", "chart", f"{repo}/fastship", "--version", "0.1.0", "--plain-http")
    assert shown.returncode == 0, shown.stderr
    assert yaml.safe_load(shown.stdout)["annotations"]["artifacthub.io/license"] == "MIT"
    (tmp_path / "pulled").mkdir()
    pulled = run_helm(
        env, "pull", f"{repo}/fastship", "--version", "0.1.0", "--plain-http",
        "--verify", "--keyring", str(signing_key["public"]), "-d", str(tmp_path / "pulled"),
    )  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "pulled" / "fastship-0.1.0.tgz").read_bytes() == package.read_bytes()

    installed = run_helm(
        env, "install", "published", f"{repo}/fastship", "--version", "0.1.0",
        "--plain-http", "-n", namespace,
        "--set", "autoscaling.enabled=false", "--set", "replicaCount=1",
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    manifest = run_helm(env, "get", "manifest", "published", "-n", namespace)
    kinds = {o["kind"] for o in parse_objects(manifest.stdout)}
    assert {"Deployment", "StatefulSet", "Migration", "AppConfig"} <= kinds
    listed = run_helm(env, "list", "-n", namespace, "-o", "yaml")
    (release,) = yaml.safe_load(listed.stdout)
    assert release["status"] == "deployed", release
    assert release["chart"] == "fastship-0.1.0", release
