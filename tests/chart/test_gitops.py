"""The chart as GitOps tools and umbrella charts use it.

Renders: deterministic, `enabled`, `global`, `commonAnnotations`, `namespaceOverride`,
`extraObjects`, the migration Job's modes and their refusals, an umbrella chart with a
`file://` dependency. On the local cluster: `helm template | kubectl apply` twice rotates
and restarts nothing; the umbrella chart applied into a namespace of its own works there.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.cases import MATRIX
from tests.chart.checks import CLUSTER_SCOPED, assert_common, containers, pod_spec
from tests.chart.conftest import (
    CHART,
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    Rendered,
    RenderErrorFn,
    RenderFn,
    parse_objects,
)
from tests.chart.secretsjob import run_as_job, secrets_data
from tests.support.kube import Kube

FULLNAME = f"{RELEASE}-fastship"


def migration_jobs(rendered: Rendered) -> list[dict[str, Any]]:
    return [
        j
        for j in rendered.all("Job")
        if j["metadata"]["labels"]["app.kubernetes.io/component"] == "migration"
    ]


# --- renders ------------------------------------------------------------------------------


def test_enabled_false_renders_nothing(render: RenderFn) -> None:
    assert render({"enabled": False}).objects == []
    # Even values that would be refused are not looked at.
    assert render({"enabled": False, "operator": {"enabled": False}}).objects == []


def test_global_registry_and_pull_secrets_reach_every_pod(render: RenderFn) -> None:
    rendered = render(
        {
            "global": {
                "imageRegistry": "registry.example.com",
                "imagePullSecrets": ["global-cred", {"name": "regcred"}],
                "otherChartsKey": {"anything": True},
            },
            "imagePullSecrets": [{"name": "regcred"}, {"name": "local-cred"}],
            "image": {"registry": "ignored.example.com"},
        }
    )
    assert_common(rendered, KUBE_VERSION)
    pods = [o for o in rendered.objects if pod_spec(o) is not None]
    assert {o["kind"] for o in pods} == {"Deployment", "StatefulSet", "Job", "Pod"}
    for obj in pods:
        spec = pod_spec(obj)
        assert spec is not None
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert spec["imagePullSecrets"] == [
            {"name": "global-cred"},
            {"name": "regcred"},
            {"name": "local-cred"},
        ], where
        for c in containers(spec):
            assert c["image"].startswith("registry.example.com/"), f"{where}: {c['image']}"
    sts = rendered.get("StatefulSet", f"{FULLNAME}-postgresql")
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example.com/postgres:17.6"
    )
    # Without global.imageRegistry, image.registry applies.
    local = render({"image": {"registry": "mirror.example.com"}})
    assert local.get("Deployment", FULLNAME)["spec"]["template"]["spec"]["containers"][0][
        "image"
    ] == ("mirror.example.com/fastship:0.1.0")


def test_common_annotations_on_every_object(render: RenderFn) -> None:
    values = {
        "commonAnnotations": {"example.com/owner": "team-a", "helm.sh/resource-policy": "x"},
        "service": {"annotations": {"example.com/owner": "service-team"}},
        "migrations": {"mode": "hook"},
        "operator": {"enabled": False},
    }
    rendered = render(values)
    for obj in rendered.objects:
        annotations = obj["metadata"].get("annotations") or {}
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert "example.com/owner" in annotations, where
    # An object's own annotations win over the common ones.
    assert rendered.get("Service", FULLNAME)["metadata"]["annotations"]["example.com/owner"] == (
        "service-team"
    )
    pvc = rendered.get("PersistentVolumeClaim", f"{FULLNAME}-postgresql-data")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    job = rendered.get("Job", f"{FULLNAME}-migrate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"


def test_namespace_override(render: RenderFn) -> None:
    rendered = render({"namespaceOverride": "team-b"})
    assert_common(rendered, KUBE_VERSION, namespace="team-b")
    binding = rendered.get("RoleBinding", f"{FULLNAME}-operator")
    assert binding["subjects"][0]["namespace"] == "team-b"


def test_namespace_override_is_checked(render_error: RenderErrorFn) -> None:
    assert "/namespaceOverride" in render_error({"namespaceOverride": "Team B"})


def test_extra_objects(render: RenderFn) -> None:
    rendered = render(
        {
            "extraObjects": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": '{{ include "fastship.fullname" . }}-extra'},
                    "data": {"ns": "{{ .Release.Namespace }}"},
                },
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {{ .Release.Name }}-extra\n"
                "stringData:\n  key: value\n",
            ]
        }
    )
    assert rendered.get("ConfigMap", f"{FULLNAME}-extra")["data"] == {"ns": NAMESPACE}
    assert rendered.get("Secret", f"{RELEASE}-extra")["stringData"] == {"key": "value"}


def test_extra_objects_are_checked(render_error: RenderErrorFn) -> None:
    assert "/extraObjects/0" in render_error({"extraObjects": [{"data": {"a": "b"}}]})


def test_migration_job_mode(render: RenderFn) -> None:
    """mode job: an ordinary Job named after its pod template, with no hook annotations."""
    values = {"migrations": {"mode": "job"}, "operator": {"enabled": False}}
    first = migration_jobs(render(values))
    again = migration_jobs(render(values))
    assert len(first) == 1
    job = first[0]
    assert job["metadata"]["name"].startswith(f"{FULLNAME}-migrate-")
    assert not [k for k in job["metadata"].get("annotations", {}) if "hook" in k]
    assert job["metadata"]["name"] == again[0]["metadata"]["name"]
    init = job["spec"]["template"]["spec"]["initContainers"]
    assert [c["name"] for c in init] == ["wait-for-database"]
    # A new image is a new Job: a Job's pod template cannot change in place.
    newer = migration_jobs(render({**values, "image": {"tag": "0.2.0"}}))[0]
    assert newer["metadata"]["name"] != job["metadata"]["name"]
    # Annotations for the GitOps tool pass through.
    waved = migration_jobs(
        render(
            {
                **values,
                "migrations": {
                    "mode": "job",
                    "jobAnnotations": {"argocd.argoproj.io/sync-wave": "1"},
                },
            }
        )
    )[0]
    assert waved["metadata"]["annotations"] == {"argocd.argoproj.io/sync-wave": "1"}


def test_hook_mode_runs_in_argo_cds_sync_phase(render: RenderFn) -> None:
    """Argo CD ignores Helm's hook annotations when its own are present: the chart sets
    Sync, so the first sync does not run the Job before the database exists (PreSync)."""
    job = render({"migrations": {"mode": "hook"}}).get("Job", f"{FULLNAME}-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "Sync"
    assert annotations["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
    assert annotations["helm.sh/hook"] == "post-install,pre-upgrade"
    external = render(MATRIX["external+hook+peers"]).get("Job", f"{FULLNAME}-migrate")
    assert external["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"migrations": {"mode": "hook", "jobAnnotations": {"helm.sh/hook": "pre-install"}}},
            "the chart sets Helm's hook annotations itself",
        ),
        (
            {
                "migrations": {
                    "mode": "hook",
                    "jobAnnotations": {"argocd.argoproj.io/hook": "PreSync"},
                }
            },
            "runs the migration Job before this release's database (postgresql.mode bundled)",
        ),
        ({"migrations": {"mode": "jobs"}}, "/migrations/mode"),
    ],
)
def test_migration_job_combinations_that_cannot_work_are_refused(
    values: dict[str, Any], message: str, render_error: RenderErrorFn
) -> None:
    assert message in render_error({**values, "operator": {"enabled": False}})


# --- an umbrella chart ------------------------------------------------------------------


def umbrella(tmp: Path, helm_bin: Path, values: dict[str, Any] | None = None) -> Path:
    """An application chart that depends on this one through `file://`."""
    root = tmp / "umbrella"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir()
    chart = {
        "apiVersion": "v2",
        "name": "shop",
        "version": "1.0.0",
        "dependencies": [
            {
                "name": "fastship",
                "version": "0.1.0",
                "repository": f"file://{CHART}",
                "condition": "fastship.enabled",
            }
        ],
    }
    (root / "Chart.yaml").write_text(yaml.safe_dump(chart))
    (root / "values.yaml").write_text(yaml.safe_dump(values) if values else "")
    proc = subprocess.run(
        [str(helm_bin), "dependency", "build", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


def template(helm_bin: Path, chart: Path, namespace: str, *args: str) -> str:
    proc = subprocess.run(
        [
            str(helm_bin),
            "template",
            "shop",
            str(chart),
            "--namespace",
            namespace,
            "--kube-version",
            KUBE_VERSION,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_umbrella_chart_renders_with_empty_values(helm_bin: Path, tmp_path: Path) -> None:
    chart = umbrella(tmp_path, helm_bin)
    rendered = Rendered(parse_objects(template(helm_bin, chart, "team-a")))
    assert_common(rendered, KUBE_VERSION, namespace="team-a")
    assert rendered.has("Deployment", "shop-fastship")
    # global from the parent reaches the dependency; `fastship.enabled: false` turns it off.
    registry = Rendered(
        parse_objects(
            template(helm_bin, chart, "team-a", "--set", "global.imageRegistry=reg.example.com")
        )
    )
    image = registry.get("Deployment", "shop-fastship")["spec"]["template"]["spec"]["containers"]
    assert image[0]["image"] == "reg.example.com/fastship:0.1.0"
    off = template(helm_bin, chart, "team-a", "--set", "fastship.enabled=false")
    assert parse_objects(off) == []


# --- on the cluster -----------------------------------------------------------------------


def apply(kube: Kube, manifest: str) -> list[str]:
    """`kubectl apply -f -` with no namespace flag; returns its output lines.

    CRDs (from `--include-crds`) go first and are waited for, as a GitOps tool does."""
    objects = parse_objects(manifest)
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    rest = [o for o in objects if o["kind"] != "CustomResourceDefinition"]
    lines: list[str] = []
    if crds:
        lines += kube.apply(crds).stdout.splitlines()
        names = [f"crd/{o['metadata']['name']}" for o in crds]
        kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)
    lines += kube.apply(rest).stdout.splitlines()
    return lines


def object_versions(kube: Kube, ns: str, manifest: str) -> dict[str, str]:
    """kind/name -> metadata.generation (objects with a spec the API server versions), or
    resourceVersion (the rest), of every object of the manifest."""
    versions: dict[str, str] = {}
    for obj in parse_objects(manifest):
        kind, name = obj["kind"], obj["metadata"]["name"]
        live = kube.get(kind, name, namespace=None if kind in CLUSTER_SCOPED else ns)
        meta = live["metadata"]
        if kind == "CustomResourceDefinition":
            continue  # shared by the whole test session
        versions[f"{kind}/{name}"] = str(meta.get("generation") or meta["resourceVersion"])
    return versions


def test_template_apply_twice_rotates_and_restarts_nothing(
    kube: Kube, restricted_namespace: str, helm_bin: Path, tmp_path: Path
) -> None:
    ns = restricted_namespace
    args = [
        str(helm_bin), "template", "gitops", str(CHART), "--namespace", ns,
        "--kube-version", kube.version, "--set", "autoscaling.enabled=false", "--include-crds",
    ]  # fmt: skip
    first = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout
    apply(kube, first)
    (job,) = kube.get("jobs", namespace=ns, selector="app.kubernetes.io/component=secrets")["items"]
    created = run_as_job(kube, ns, job)
    assert created.returncode == 0, created.stderr
    assert created.stdout.count(": created") == 2, created.stdout
    names = ["gitops-fastship-jwt", "gitops-fastship-postgresql"]
    before = secrets_data(kube, ns, names)
    assert len(before["gitops-fastship-jwt"]["jwt-secret-key"]) == 64
    pg = before["gitops-fastship-postgresql"]
    assert pg["uri"] == (
        f"postgresql://fastship:{pg['password']}@gitops-fastship-postgresql:5432/fastship"
    )
    workloads = {
        kind: kube.get(kind, name, namespace=ns)
        for kind, name in (
            ("deployment", "gitops-fastship"),
            ("statefulset", "gitops-fastship-postgresql"),
        )
    }
    versions = object_versions(kube, ns, first)

    # A second render and apply (what every Argo CD sync does) changes nothing at all.
    second = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout
    assert second == first
    apply(kube, second)
    # The API server skips writes that change nothing: no object's spec (generation) or,
    # for objects without one, content (resourceVersion) moved.
    assert object_versions(kube, ns, second) == versions
    again = run_as_job(kube, ns, job)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("exists, left unchanged") == 2, again.stdout
    assert secrets_data(kube, ns, names) == before
    for kind, old in workloads.items():
        new = kube.get(kind, old["metadata"]["name"], namespace=ns)
        assert new["metadata"]["generation"] == old["metadata"]["generation"], kind
        assert new["spec"]["template"] == old["spec"]["template"], kind

    # A new image applies too (the secrets Job is a new Job, not a changed one), and still
    # rotates nothing.
    upgraded = subprocess.run(
        [*args, "--set", "image.tag=0.2.0"], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    apply(kube, upgraded)
    assert secrets_data(kube, ns, names) == before
    deploy = kube.get("deployment", "gitops-fastship", namespace=ns)
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == "fastship:0.2.0"

    # The Job's rights: create Secrets; it cannot read, change or delete one.
    sa = f"system:serviceaccount:{ns}:gitops-fastship-secrets"
    for verb, allowed in (
        ("create", "yes"),
        ("get", "no"),
        ("list", "no"),
        ("update", "no"),
        ("patch", "no"),
        ("delete", "no"),
    ):
        proc = kube.kubectl("auth", "can-i", verb, "secrets", "-n", ns, "--as", sa, check=False)
        assert proc.stdout.strip() == allowed, (verb, proc.stdout, proc.stderr)


def test_umbrella_chart_applied_into_its_own_namespace(
    kube: Kube, namespace: str, helm_bin: Path, tmp_path: Path
) -> None:
    """Rendered for a namespace and applied without `-n`: every object lands there, and the
    operator's RoleBinding grants its rights there (not in `default`)."""
    ns = namespace
    chart = umbrella(tmp_path, helm_bin)
    manifest = template(helm_bin, chart, ns, "--include-crds")
    objects = parse_objects(manifest)
    apply(kube, manifest)
    for obj in objects:
        if obj["kind"] in CLUSTER_SCOPED:
            continue
        live = kube.get(obj["kind"], obj["metadata"]["name"], namespace=ns)
        assert live["metadata"]["namespace"] == ns
    default = kube.get("deployments", namespace="default")["items"]
    assert not [d for d in default if d["metadata"]["name"].startswith("shop-")]
    sa = f"system:serviceaccount:{ns}:shop-fastship-operator"
    for verb, resource in (("list", "migrations.fastship.dev"), ("patch", "deployments.apps")):
        proc = kube.kubectl("auth", "can-i", verb, resource, "-n", ns, "--as", sa, check=False)
        assert proc.stdout.strip() == "yes", (verb, resource, proc.stderr)


def test_job_mode_with_helm_wait_as_flux_installs(kube: Kube, restricted_namespace: str) -> None:
    """mode job under `helm --wait --wait-for-jobs` (what Flux's helm-controller does): the
    Job is an object of the release; a new image replaces it, an unchanged one stays."""
    ns = restricted_namespace
    base = [
        "upgrade", "--install", "flux", str(CHART), "-n", ns,
        "--wait", "--wait-for-jobs", "--timeout", "180s",
        "--set", "migrations.mode=job", "--set", "operator.enabled=false",
        "--set", "autoscaling.enabled=false", "--set", "replicaCount=1",
        # No volume provisioner on the local cluster, and --wait waits for claims to bind.
        "--set", "postgresql.mode=external", "--set", "postgresql.external.existingSecret=db",
    ]  # fmt: skip
    kube.kubectl(
        "create", "secret", "generic", "db", "-n", ns,
        "--from-literal=uri=postgresql://app:pw@db.example:5432/app",
    )  # fmt: skip
    selector = "app.kubernetes.io/instance=flux,app.kubernetes.io/component=migration"

    def jobs() -> list[dict[str, Any]]:
        return list(kube.get("jobs", namespace=ns, selector=selector)["items"])

    kube.helm(*base)
    (first,) = jobs()
    assert first["metadata"]["name"].startswith("flux-fastship-migrate-")
    assert first["status"].get("succeeded") == 1
    manifest = kube.helm("get", "manifest", "flux", "-n", ns).stdout
    assert first["metadata"]["name"] in manifest  # the release's own object, not a hook

    kube.helm(*base)  # unchanged values: the same Job, not run again
    (same,) = jobs()
    assert same["metadata"]["uid"] == first["metadata"]["uid"]

    kube.helm(*base, "--set", "image.tag=0.2.0")
    (second,) = jobs()  # the old Job went with the upgrade
    assert second["metadata"]["name"] != first["metadata"]["name"]
    assert second["spec"]["template"]["spec"]["containers"][0]["image"] == "fastship:0.2.0"
    assert second["status"].get("succeeded") == 1
