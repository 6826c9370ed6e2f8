"""The chart on the real node: install, traffic through the Service, configuration,
upgrade under load, a failed migration and rollback, scaling, faults.

One release is installed with the chart's default values, except the image names, which
point at images built here, into a namespace that enforces Pod Security "restricted". The
tests in this module run in order on that release, as a platform team would meet it.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.image.engine import REPO, Engine, copy_context
from tests.realnode.conftest import CHART, FULLNAME, NUMBERS, RELEASE, Release, ready
from tests.support.conditions import condition
from tests.support.waiting import wait_until


def test_install_runs_every_part_for_real(release: Release) -> None:
    # The bundled Postgres: its claim bound to the node's volume, the server up.
    pvc = release.get("pvc", f"{FULLNAME}-postgresql-data")
    assert pvc["status"]["phase"] == "Bound"
    (pg,) = release.get("pods", "-l", "app.kubernetes.io/component=postgresql")["items"]
    assert ready(pg)
    assert release.kubectl("logs", pg["metadata"]["name"]).count("ready to accept connections")

    # The Migration's Job really ran `migrate`, which reported the revision it reached.
    (migration,) = release.get("migrations")["items"]
    assert condition(migration, "Ready")["status"] == "True", migration["status"]
    job = release.get("job", migration["status"]["jobName"])
    assert job["status"].get("succeeded") == 1, job["status"]
    job_pods = release.get("pods", "-l", f"job-name={job['metadata']['name']}")["items"]
    succeeded = [p for p in job_pods if p["status"]["phase"] == "Succeeded"]
    assert succeeded, [p["status"] for p in job_pods]
    terminated = succeeded[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0, terminated
    assert terminated.get("message"), terminated

    # The app pods passed their wait-for-schema init container and their readiness probes.
    # (Readiness is re-probed all the time: on a busy machine a probe can time out once.)
    pods = wait_until(
        lambda: (lambda ok: ok if len(ok) == 2 else None)(
            [p for p in release.app_pods() if ready(p)]
        ),
        timeout=90, interval=1, what="both app pods to be ready",
    )  # fmt: skip
    for pod in pods:
        (init,) = pod["status"]["initContainerStatuses"]
        assert init["state"]["terminated"]["exitCode"] == 0

    # The operator runs as the chart's ServiceAccount, bound only by the chart's Role.
    (op,) = release.get("pods", "-l", "app.kubernetes.io/component=operator")["items"]
    assert ready(op) or op["status"]["phase"] == "Running"
    account = op["spec"]["serviceAccountName"]
    assert account == f"{FULLNAME}-operator"
    subject = f"system:serviceaccount:{release.namespace}:{account}"
    bindings = release.get("rolebindings")["items"]
    bound = [
        b["roleRef"]["name"]
        for b in bindings
        if any(s.get("name") == account for s in b.get("subjects", []))
    ]
    assert bound == [f"{FULLNAME}-operator"]
    cluster_bindings = json.loads(
        release.node.kube.kubectl("get", "clusterrolebindings", "-o", "json").stdout
    )["items"]
    assert not [
        b["metadata"]["name"]
        for b in cluster_bindings
        if any(
            s.get("name") == account and s.get("namespace") == release.namespace
            for s in b.get("subjects", [])
        )
    ]
    can = release.kubectl("auth", "can-i", "--as", subject, "delete", "secrets", check=False)
    assert can.strip() == "no"

    # Every pod of the release is admitted by Pod Security "restricted" and runs non-root.
    for pod in release.get("pods")["items"]:
        assert pod["spec"]["securityContext"].get("runAsNonRoot") is True, pod["metadata"]["name"]


def test_helm_test_passes_and_shows_its_logs(release: Release) -> None:
    out = release.helm("test", RELEASE, "--timeout", "2m", "--logs")
    assert "Phase:          Succeeded" in out, out
    # The test Pod's own output: the service's /readyz through its Service.
    assert f"POD LOGS: {FULLNAME}-test-readyz" in out, out
    assert f"http://{FULLNAME}:80/readyz 200" in out, out


def test_the_api_through_the_service(release: Release) -> None:
    result = release.traffic("crud", release.url)
    assert result["me"]["email"] == result["email"]
    assert result["created"][0] == 201
    assert result["listed"]["total"] == 1
    assert result["listed"]["items"][0]["name"] == "Cup"
    assert result["updated"] == [200, {**result["updated"][1], "price": "9.99"}]
    assert result["deleted"] == 204
    assert result["after_delete"] == 404


# --- upgrade under load ----------------------------------------------------------------------

REVISION_TEMPLATE = '''"""{message}"""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
{body}


def downgrade() -> None:
    pass
'''


def alembic_head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(REPO / "app" / "migrations"))
    (head,) = ScriptDirectory.from_config(config).get_heads()
    return str(head)


def build_with_revisions(
    images: dict[str, str], tmp: Path, tag: str, revisions: list[tuple[str, str, str]]
) -> str:
    """The project's image with more Alembic revisions (id, upgrade body, down revision);
    returns the image name."""
    context = copy_context(tmp / tag)
    versions = context / "app" / "migrations" / "versions"
    for revision, body, down in revisions:
        (versions / f"{revision}_realnode.py").write_text(
            REVISION_TEMPLATE.format(
                message=f"test revision {revision}", revision=revision, down=down, body=body
            )
        )
    name = f"{images['app'].rsplit(':', 1)[0]}:{tag}"
    Engine().build(context, tag=name, base_image=images["base"], ca_bundle=None)
    return name


@pytest.fixture(scope="module")
def next_images(
    release: Release, images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """v2 adds a column (expand: the running release ignores it); v3 fails to migrate."""
    tmp = tmp_path_factory.mktemp("images")
    head = alembic_head()
    started = time.monotonic()
    add_column = (
        "a1b2c3d4e5f6",
        '    op.add_column("items", sa.Column("realnode_note", sa.Text(), nullable=True))\n'
        '    op.execute("SELECT pg_sleep(5)")',
        head,
    )
    fail = ("b2c3d4e5f6a7", '    op.execute("SELECT no_such_function()")', "a1b2c3d4e5f6")
    v2 = build_with_revisions(images, tmp, "realnode-v2", [add_column])
    v3 = build_with_revisions(images, tmp, "realnode-v3", [add_column, fail])
    NUMBERS["builds of the v2 and v3 images"] = f"{time.monotonic() - started:.1f} s"
    release.node.load(v2, v3)
    return {"v2": v2, "v3": v3}


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class LoadRun:
    """``traffic load`` running against the release: one line on stdout per acknowledged
    write, so a test waits for the writes themselves rather than for time to pass."""

    def __init__(self, release: Release, out: Path, seconds: float, workers: int = 4) -> None:
        self.out = out
        self.acked = 0
        self.proc = release.node.popen(
            sys.executable, "-m", "tests.realnode.traffic", "load", release.url,
            "--seconds", str(seconds), "--workers", str(workers), "--out", str(out),
            stdout=-1, stderr=-1,
        )  # fmt: skip
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for_acks(1)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)

    def wait_for_acks(self, more: int, timeout: float = 120) -> None:
        """Until ``more`` further writes are acknowledged."""
        target = self.acked + more
        deadline = time.monotonic() + timeout
        while self.acked < target:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"{self.acked} writes acknowledged, waited for {target}"
                ) from None
            if line.startswith("acked "):
                self.acked = int(line.split()[1])

    def finish(self) -> dict[str, Any]:
        self.proc.terminate()
        self.proc.wait(timeout=120)
        err = self.proc.stderr.read() if self.proc.stderr is not None else ""
        assert self.proc.returncode == 0, err
        result: dict[str, Any] = json.loads(self.out.read_text())
        return result


def assert_all_present(release: Release, result: dict[str, Any], out: Path) -> None:
    check = release.traffic("verify", release.url, "--token", result["token"], str(out))
    assert check["checked"] == len(result["acked"]) > 0
    assert check["missing"] == []


def test_upgrade_under_load_loses_nothing(
    release: Release, next_images: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "load.json"
    old_rs = {p["metadata"]["labels"]["pod-template-hash"] for p in release.app_pods()}
    load = LoadRun(release, out, seconds=240)
    try:
        load.wait_for_acks(20)  # writes flowing through both old pods
        started = time.monotonic()
        tag = next_images["v2"].rsplit(":", 1)[1]
        release.helm(
            "upgrade", RELEASE, str(CHART), *release.values, "--set-string", f"image.tag={tag}",
            "--wait", "--timeout", "5m", timeout=360,
        )  # fmt: skip
        NUMBERS["helm upgrade --wait with a migration, under load"] = (
            f"{time.monotonic() - started:.1f} s"
        )
        load.wait_for_acks(20)  # and through the new ones
    finally:
        result = load.finish()
    NUMBERS["requests during the upgrade (writes acknowledged, failed)"] = (
        f"{result['requests']} ({len(result['acked'])}, {len(result['failures'])})"
    )
    assert result["failures"] == []
    assert_all_present(release, result, out)

    # The new pods started serving only after the migration's Job had succeeded.
    (migration,) = release.get("migrations")["items"]
    assert migration["status"]["appliedRevision"] == "a1b2c3d4e5f6", migration["status"]
    job_pods = release.get("pods", "-l", f"job-name={migration['status']['jobName']}")["items"]
    (done,) = [p for p in job_pods if p["status"]["phase"] == "Succeeded"]
    migrated = stamp(done["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"])
    new = [
        p for p in release.app_pods() if p["metadata"]["labels"]["pod-template-hash"] not in old_rs
    ]
    assert len(new) == 2
    assert all(ready(p) for p in new)
    for pod in new:
        (app,) = pod["status"]["containerStatuses"]
        assert app["image"].endswith(tag)
        # Timestamps have whole seconds: the schema is committed just before `migrate` exits.
        started = stamp(app["state"]["running"]["startedAt"])
        assert started >= migrated - 1, (app, migrated)


def test_failed_migration_keeps_the_old_pods_serving_and_rollback_returns(
    release: Release, next_images: dict[str, str], tmp_path: Path
) -> None:
    serving = {p["metadata"]["name"] for p in release.app_pods()}
    revision = json.loads(release.helm("history", RELEASE, "-o", "json"))[-1]["revision"]
    tag = next_images["v3"].rsplit(":", 1)[1]
    release.helm(
        "upgrade", RELEASE, str(CHART), *release.values, "--set-string", f"image.tag={tag}",
        "--set", "migrations.backoffLimit=0",
    )  # fmt: skip

    def failed() -> dict[str, Any] | None:
        (m,) = release.get("migrations")["items"]
        return m if m.get("status", {}).get("phase") == "Failed" else None

    migration = wait_until(failed, timeout=180, interval=2, what="the Migration to fail")
    assert "no_such_function" in migration["status"]["message"]

    # The new pods wait in wait-for-schema; the old ones keep serving.
    def waiting_new_pod() -> bool:
        return any(
            s.get("name") == "wait-for-schema" and "running" in s.get("state", {})
            for p in release.app_pods()
            if p["metadata"]["name"] not in serving
            for s in p["status"].get("initContainerStatuses", [])
        )

    wait_until(waiting_new_pod, timeout=120, interval=1, what="a new pod in wait-for-schema")
    assert serving <= {p["metadata"]["name"] for p in release.app_pods() if ready(p)}
    out = tmp_path / "load.json"
    load = LoadRun(release, out, seconds=10, workers=2)
    load.proc.wait(timeout=60)
    result = load.finish()
    assert result["failures"] == []
    assert result["acked"]

    release.helm("rollback", RELEASE, str(revision), "--wait", "--timeout", "3m", timeout=240)
    pods = release.app_pods()
    assert pods
    assert all(ready(p) for p in pods)
    assert all(p["spec"]["containers"][0]["image"].endswith("realnode-v2") for p in pods)
    assert release.traffic("crud", release.url)["after_delete"] == 404


# --- configuration ---------------------------------------------------------------------------


def openapi_title(release: Release) -> str:
    result = release.node.run(
        sys.executable, "-c",
        "import httpx, sys; print(httpx.get(sys.argv[1] + '/openapi.json', timeout=10)"
        ".json()['info']['title'])",
        release.url,
    )  # fmt: skip
    return result.stdout.strip()


def test_appconfig_change_rolls_the_pods_and_shows_in_the_api(release: Release) -> None:
    before = release.get("appconfig", FULLNAME).get("status", {}).get("configHash")
    release.kubectl(
        "patch", "appconfig", FULLNAME, "--type", "merge",
        "-p", json.dumps({"spec": {"settings": {"app_name": "shop on a real node"}}}),
    )  # fmt: skip

    def applied() -> str | None:
        status = release.get("appconfig", FULLNAME).get("status", {})
        new = status.get("configHash")
        return str(new) if new and new != before else None

    config_hash = wait_until(applied, timeout=60, interval=1, what="the new config's hash")

    def rolled() -> bool:
        # Every pod runs the new hash, is ready, and there are as many as the Deployment wants.
        wanted = int(release.get("deployment", FULLNAME)["spec"]["replicas"])
        pods = release.app_pods()
        return len(pods) == wanted and all(
            ready(p)
            and p["metadata"].get("annotations", {}).get("fastship.dev/config-hash") == config_hash
            for p in pods
        )

    wait_until(rolled, timeout=180, interval=2, what="the pods to run the new config")
    status = release.get("appconfig", FULLNAME).get("status")
    # Every pod behind the Service answers with the new name.
    titles = {openapi_title(release) for _ in range(6)}
    assert titles == {"shop on a real node"}, status

    # An invalid change is refused in status and rolls nothing.
    serving = {p["metadata"]["name"] for p in release.app_pods()}
    template = release.get("deployment", FULLNAME)["spec"]["template"]
    release.kubectl(
        "patch", "appconfig", FULLNAME, "--type", "merge",
        "-p", json.dumps({"spec": {"settings": {"log_level": "LOUD"}}}),
    )  # fmt: skip

    def refused() -> str | None:
        valid = condition(release.get("appconfig", FULLNAME), "Valid")
        return valid.get("message") if valid.get("status") == "False" else None

    message = wait_until(refused, timeout=60, interval=1, what="the AppConfig to be refused")
    assert "log_level" in message
    # The reconcile that refused it left the Deployment's pod template as it was.
    assert release.get("deployment", FULLNAME)["spec"]["template"] == template
    assert {p["metadata"]["name"] for p in release.app_pods()} == serving
    assert openapi_title(release) == "shop on a real node"
    release.kubectl(
        "patch", "appconfig", FULLNAME, "--type", "json",
        "-p", json.dumps([{"op": "remove", "path": "/spec/settings/log_level"}]),
    )  # fmt: skip


# --- faults ----------------------------------------------------------------------------------


def test_a_pod_killed_under_load_loses_no_write(release: Release, tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    load = LoadRun(release, out, seconds=60)
    try:
        load.wait_for_acks(20)
        victim = release.app_pods()[0]["metadata"]["name"]
        release.kubectl("delete", "pod", victim, "--wait=false")
        wait_until(
            lambda: len([p for p in release.app_pods() if ready(p)]) >= 2,
            timeout=120, interval=1, what="a replacement pod",
        )  # fmt: skip
        load.wait_for_acks(20)  # writes go on with the replacement
    finally:
        result = load.finish()
    assert result["failures"] == [], result["failures"][:5]
    assert_all_present(release, result, out)


def test_operator_restarted_during_a_migration_adopts_its_job(
    release: Release, next_images: dict[str, str]
) -> None:
    # A retry of the current spec starts a new Job (v2's migration sleeps 5 s, then finds
    # the schema current); the operator pod is deleted while it runs.
    release.kubectl(
        "annotate", "migration", FULLNAME, f"fastship.dev/retry={time.time():.0f}", "--overwrite"
    )

    def job_running() -> str | None:
        (m,) = release.get("migrations")["items"]
        status = m.get("status", {})
        return status.get("jobName") if status.get("phase") in {"Pending", "Running"} else None

    job = wait_until(job_running, timeout=60, interval=0.5, what="a new migration Job")
    (op,) = release.get("pods", "-l", "app.kubernetes.io/component=operator")["items"]
    release.kubectl("delete", "pod", op["metadata"]["name"], "--wait=false")

    def succeeded() -> dict[str, Any] | None:
        (m,) = release.get("migrations")["items"]
        return m if m.get("status", {}).get("phase") == "Succeeded" else None

    migration = wait_until(succeeded, timeout=180, interval=2, what="the Migration to succeed")
    assert migration["status"]["jobName"] == job
    owned = [
        j["metadata"]["name"] for j in release.get("jobs")["items"] if j["metadata"]["name"] == job
    ]
    assert owned == [job]
    (new_op,) = release.get("pods", "-l", "app.kubernetes.io/component=operator")["items"]
    assert new_op["metadata"]["name"] != op["metadata"]["name"]


# --- scaling ---------------------------------------------------------------------------------


def test_load_scales_the_deployment_up_and_back_down(release: Release) -> None:
    def replicas() -> int:
        return int(release.get("deployment", FULLNAME)["spec"]["replicas"])

    wait_until(
        lambda: release.kubectl("top", "pods", "--no-headers", check=False).strip(),
        timeout=120, interval=3, what="metrics-server to report the pods' CPU",
    )  # fmt: skip
    assert replicas() == 2
    # Scale down within a test's patience: the chart waits 300 s, then drops 20% a minute.
    release.helm(
        "upgrade", RELEASE, str(CHART), "--reuse-values", "--set-json",
        'autoscaling.behavior.scaleDown={"stabilizationWindowSeconds": 15, "policies":'
        ' [{"type": "Percent", "value": 100, "periodSeconds": 15}]}',
    )  # fmt: skip
    started = time.monotonic()
    proc = release.node.popen(
        sys.executable, "-m", "tests.realnode.traffic", "burn", release.url,
        "--seconds", "150", "--workers", "8", stdout=-1, stderr=-1,
    )  # fmt: skip
    try:
        wait_until(lambda: replicas() > 2, timeout=150, interval=2, what="the HPA to scale up")
        NUMBERS["load start to HPA scale-up"] = f"{time.monotonic() - started:.1f} s"
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    stopped = time.monotonic()
    wait_until(lambda: replicas() == 2, timeout=240, interval=3, what="the HPA to scale down")
    NUMBERS["load stop to HPA scale-down"] = f"{time.monotonic() - stopped:.1f} s"
