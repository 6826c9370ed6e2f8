"""Benchmark of the operator's reaction time on the local control plane.

Measures, over N changes each (default 20):
  * Migration spec change (a new image) -> its Job exists;
  * AppConfig settings change -> the Deployment's pod template carries the new hash.

The operator runs as its own process (``python -m fastship_operator``) under a
ServiceAccount bound to exactly the chart's Role; changes are made and observed with the
official client (patch, then a watch). Uses FASTSHIP_KUBECONFIG when set, else starts a
kwok cluster like the tests do (needs `make tools`).

    python -m bench.operator [--changes 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch

from fastship_operator import appconfigs as ac
from fastship_operator import migrations as mg
from tests.operator.harness import install_crds, service_account_kubeconfig
from tests.support.kube import (
    CLIENT_TOOLS,
    CLUSTER_TOOLS,
    KUBECONFIG_ENV,
    Kube,
    LocalCluster,
    _make_env,
    _missing,
    _server_version,
    tools_bin,
)
from tests.support.waiting import free_port

TARGET_MEDIAN = 1.0
GROUP, VERSION = "fastship.dev", "v1alpha1"


@contextmanager
def cluster() -> Iterator[Kube]:
    existing = os.environ.get(KUBECONFIG_ENV)
    bin_dir = tools_bin()
    if existing:
        path = Path(existing).expanduser()
        kube = Kube(kubeconfig=path, bin_dir=bin_dir, env=_make_env(bin_dir, path))
        yield kube
        return
    missing = _missing(bin_dir, (*CLUSTER_TOOLS, *CLIENT_TOOLS))
    if missing:
        sys.exit(f"missing tools in {bin_dir}: {', '.join(missing)}; run `make tools`")
    local = LocalCluster(bin_dir)
    try:
        local.start()
        kube = Kube(
            kubeconfig=local.kubeconfig,
            bin_dir=bin_dir,
            env=_make_env(bin_dir, local.kubeconfig),
            local=True,
        )
        kube.version, kube.git_version = _server_version(kube)
        print(f"kwok cluster {kube.git_version} up in {local.start_seconds:.1f}s", flush=True)
        yield kube
    finally:
        local.stop()


class Seen:
    """Watches a namespace and records when each key was first seen (monotonic time)."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.cond = threading.Condition()
        self.stop = threading.Event()

    def record(self, key: str) -> None:
        now = time.perf_counter()
        with self.cond:
            self.times.setdefault(key, now)
            self.cond.notify_all()

    def wait(self, key: str, timeout: float = 30.0) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: key in self.times, timeout=timeout):
                raise TimeoutError(f"not seen within {timeout:.0f}s: {key}")
            return self.times[key]


def watch_jobs(api: k8s.ApiClient, ns: str, seen: Seen) -> None:
    batch = k8s.BatchV1Api(api)
    while not seen.stop.is_set():
        with suppress(Exception):
            for event in k8s_watch.Watch().stream(
                batch.list_namespaced_job, namespace=ns, timeout_seconds=30
            ):
                seen.record(event["object"].metadata.name)
                if seen.stop.is_set():
                    return


def watch_deployments(api: k8s.ApiClient, ns: str, seen: Seen) -> None:
    apps = k8s.AppsV1Api(api)
    while not seen.stop.is_set():
        with suppress(Exception):
            for event in k8s_watch.Watch().stream(
                apps.list_namespaced_deployment, namespace=ns, timeout_seconds=30
            ):
                annotations = event["object"].spec.template.metadata.annotations or {}
                value = annotations.get(ac.HASH_ANNOTATION)
                if value:
                    seen.record(value)
                if seen.stop.is_set():
                    return


def migration_spec(tag: str) -> dict[str, Any]:
    return {
        "image": f"registry.example/fastship:{tag}",
        "databaseSecretRef": {"name": "app-db", "key": "uri"},
        "deploymentRef": {"name": "app"},
        "backoffLimit": 0,
    }


def appconfig_spec(minutes: int) -> dict[str, Any]:
    return {
        "deploymentRef": {"name": "app"},
        "settings": {"log_level": "INFO", "access_token_expire_minutes": str(minutes)},
    }


def summary(name: str, samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    return {
        "what": name,
        "n": len(samples),
        "median_s": round(statistics.median(samples), 4),
        "p95_s": round(p95, 4),
        "min_s": round(ordered[0], 4),
        "max_s": round(ordered[-1], 4),
    }


def wait_liveness(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the operator exited with {proc.returncode}")
        with suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310
            if resp.status == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"no liveness answer from {url}")


def run(changes: int) -> int:
    with cluster() as kube, tempfile.TemporaryDirectory() as tmp:
        install_crds(kube)
        ns = kube.create_namespace(f"bench-operator-{os.getpid()}")
        try:
            kubeconfig = service_account_kubeconfig(kube, ns, Path(tmp) / "operator.kubeconfig")
            kube.apply(
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "app"},
                    "spec": {
                        "replicas": 1,
                        "selector": {"matchLabels": {"app": "app"}},
                        "template": {
                            "metadata": {"labels": {"app": "app"}},
                            "spec": {
                                "containers": [
                                    {
                                        "name": "app",
                                        "image": "registry.k8s.io/pause:3.10",
                                        # The AppConfig's ConfigMap: the operator refuses
                                        # settings that no container loads.
                                        "envFrom": [{"configMapRef": {"name": "app-config"}}],
                                    }
                                ]
                            },
                        },
                    },
                },
                namespace=ns,
            )
            port = free_port()
            liveness = f"http://127.0.0.1:{port}/healthz"
            env = dict(
                os.environ,
                KUBECONFIG=str(kubeconfig),
                FASTSHIP_OPERATOR_LOG_LEVEL="INFO",
                # The Deployment runs pause, not the Migrations' image.
                FASTSHIP_OPERATOR_ALLOWED_IMAGES="registry.example/*",
                FASTSHIP_OPERATOR_METRICS=f"127.0.0.1:{free_port()}",
            )
            env.pop("KUBERNETES_SERVICE_HOST", None)
            log_path = Path(tmp) / "operator.log"
            with log_path.open("wb") as log:
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "fastship_operator",
                        "--namespace",
                        ns,
                        "--liveness",
                        liveness,
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                try:
                    t0 = time.perf_counter()
                    wait_liveness(liveness, proc)
                    print(f"operator live in {time.perf_counter() - t0:.2f}s", flush=True)
                    results = measure(kube, ns, changes)
                finally:
                    proc.terminate()
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
            errors = [
                line
                for line in log_path.read_text(errors="replace").splitlines()
                if '"level": "error"' in line
            ]
        finally:
            kube.delete_namespace(ns)
    for line in errors[:5]:
        print("operator error:", line)
    print(json.dumps(results, indent=2))
    for r in results:
        verdict = "met" if r["median_s"] < TARGET_MEDIAN else "MISSED"
        print(
            f"{r['what']}: median {r['median_s'] * 1000:.0f} ms, p95 {r['p95_s'] * 1000:.0f} ms "
            f"over {r['n']} changes (target median < {TARGET_MEDIAN:.0f} s: {verdict})"
        )
    return 0


def measure(kube: Kube, ns: str, changes: int) -> list[dict[str, Any]]:
    api = k8s_config.new_client_from_config(config_file=str(kube.kubeconfig))
    custom = k8s.CustomObjectsApi(api)
    jobs, hashes = Seen(), Seen()
    threads = [
        threading.Thread(target=watch_jobs, args=(api, ns, jobs), daemon=True),
        threading.Thread(target=watch_deployments, args=(api, ns, hashes), daemon=True),
    ]
    for t in threads:
        t.start()

    def expected_job(tag: str) -> str:
        return mg.job_name("app", mg.spec_hash(mg.parse_spec(migration_spec(tag))))

    def expected_hash(minutes: int) -> str:
        return ac.config_hash(ac.validate(appconfig_spec(minutes)).data)

    # Warm-up: the first objects (creation, informer start) are not measured.
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        ns,
        "migrations",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Migration",
            "metadata": {"name": "app"},
            "spec": migration_spec("warmup"),
        },
    )
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        ns,
        "appconfigs",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AppConfig",
            "metadata": {"name": "app"},
            "spec": appconfig_spec(29),
        },
    )
    jobs.wait(expected_job("warmup"), timeout=60)
    hashes.wait(expected_hash(29), timeout=60)

    to_job: list[float] = []
    to_annotation: list[float] = []
    for i in range(changes):
        tag = f"bench-{i}"
        start = time.perf_counter()
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            ns,
            "migrations",
            "app",
            {"spec": {"image": migration_spec(tag)["image"]}},
            _content_type="application/merge-patch+json",
        )
        to_job.append(jobs.wait(expected_job(tag)) - start)

        minutes = 30 + i
        start = time.perf_counter()
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            ns,
            "appconfigs",
            "app",
            {"spec": {"settings": appconfig_spec(minutes)["settings"]}},
            _content_type="application/merge-patch+json",
        )
        to_annotation.append(hashes.wait(expected_hash(minutes)) - start)
        time.sleep(0.2)  # let the rollout's own Deployment updates pass between samples
    jobs.stop.set()
    hashes.stop.set()
    return [
        summary("Migration change -> Job created", to_job),
        summary("AppConfig change -> Deployment annotated", to_annotation),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.operator", description=__doc__)
    parser.add_argument("--changes", type=int, default=20, help="changes per resource")
    args = parser.parse_args()
    if args.changes < 1:
        parser.error("--changes must be at least 1")
    return run(args.changes)


if __name__ == "__main__":
    sys.exit(main())
