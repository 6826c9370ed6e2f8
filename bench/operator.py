"""Benchmark of the operator's reaction time on the local control plane.

Measures, over N changes each (default 20):
  * Migration spec change (a new image) -> its Job exists;
  * AppConfig settings change -> the Deployment's pod template carries the new hash.

The operator runs as its own process (``python -m fastship_operator``) under a
ServiceAccount bound to exactly the chart's Role; changes are made and observed with the
official client (patch, then a watch). Uses FASTSHIP_KUBECONFIG when set, else starts a
kwok cluster like the tests do (needs `make tools`).

With ``--compare`` a second operator runs beside it in a namespace of its own: the same
reconciles run by kopf's event handlers directly (``bench/operator_kopf.py``); the two
take turns for ``--rounds``. ``--burst N`` adds, each turn, N changes of each resource
back to back and counts from the operators' /metrics what they did about them.

    python -m bench.operator [--changes 20] [--compare --rounds 4 --burst 10]
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


# The operator as shipped (its work queue), and the same reconciles run by kopf's event
# handlers directly (bench/operator_kopf.py).
VARIANTS = {
    "work queue": ["-m", "fastship_operator"],
    "kopf handlers": ["-m", "bench.operator_kopf"],
}


def counters(url: str) -> dict[str, float]:
    """The operator's counters from /metrics, by sample name with labels."""
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310
        text = resp.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("fastship_operator_") and "_total" in line:
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def count(values: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in values.items() if k.startswith(prefix))


class Operator:
    """One operator process in a namespace of its own, and the watches that time it."""

    def __init__(self, kube: Kube, variant: str, tmp: Path) -> None:
        self.kube, self.variant = kube, variant
        self.ns = kube.create_namespace(f"bench-operator-{len(variant)}-{os.getpid()}")
        kubeconfig = service_account_kubeconfig(kube, self.ns, tmp / f"{self.ns}.kubeconfig")
        kube.apply(deployment(), namespace=self.ns)
        port = free_port()
        self.liveness = f"http://127.0.0.1:{port}/healthz"
        metrics_port = free_port()
        self.metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        env = dict(
            os.environ,
            KUBECONFIG=str(kubeconfig),
            FASTSHIP_OPERATOR_LOG_LEVEL="INFO",
            # The Deployment runs pause, not the Migrations' image.
            FASTSHIP_OPERATOR_ALLOWED_IMAGES="registry.example/*",
            FASTSHIP_OPERATOR_METRICS=f"127.0.0.1:{metrics_port}",
        )
        env.pop("KUBERNETES_SERVICE_HOST", None)
        self.log_path = tmp / f"{self.ns}.log"
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *VARIANTS[variant],
                "--namespace",
                self.ns,
                "--liveness",
                self.liveness,
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.api = k8s_config.new_client_from_config(config_file=str(kube.kubeconfig))
        self.custom = k8s.CustomObjectsApi(self.api)
        self.jobs, self.hashes = Seen(), Seen()
        self.next = 0

    def start(self) -> None:
        t0 = time.perf_counter()
        wait_liveness(self.liveness, self.proc)
        print(f"{self.variant}: live in {time.perf_counter() - t0:.2f}s", flush=True)
        for target, seen in ((watch_jobs, self.jobs), (watch_deployments, self.hashes)):
            threading.Thread(target=target, args=(self.api, self.ns, seen), daemon=True).start()
        # Warm-up: the first objects (creation, informer start) are not measured.
        for plural, kind, spec in (
            ("migrations", "Migration", migration_spec("warmup")),
            ("appconfigs", "AppConfig", appconfig_spec(29)),
        ):
            self.custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                self.ns,
                plural,
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": kind,
                    "metadata": {"name": "app"},
                    "spec": spec,
                },
            )
        self.jobs.wait(expected_job("warmup"), timeout=60)
        self.hashes.wait(expected_hash(29), timeout=60)

    def stop(self) -> list[str]:
        self.jobs.stop.set()
        self.hashes.stop.set()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        self.kube.delete_namespace(self.ns)
        return [
            line
            for line in self.log_path.read_text(errors="replace").splitlines()
            if '"level": "error"' in line
        ]

    def patch(self, plural: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.ns,
            plural,
            "app",
            {"spec": spec},
            _content_type="application/merge-patch+json",
        )

    def changes(self, n: int) -> tuple[list[float], list[float]]:
        """``n`` changes of each resource, one at a time: seconds to the Job / annotation."""
        to_job: list[float] = []
        to_annotation: list[float] = []
        for _ in range(n):
            self.next += 1
            tag = f"bench-{self.next}"
            start = time.perf_counter()
            self.patch("migrations", {"image": migration_spec(tag)["image"]})
            to_job.append(self.jobs.wait(expected_job(tag)) - start)
            minutes = 30 + self.next
            start = time.perf_counter()
            self.patch("appconfigs", {"settings": appconfig_spec(minutes)["settings"]})
            to_annotation.append(self.hashes.wait(expected_hash(minutes)) - start)
            time.sleep(0.2)  # let the rollout's own Deployment updates pass between samples
        return to_job, to_annotation

    def quiet(self, seconds: float = 1.5, timeout: float = 60) -> dict[str, float]:
        """The counters once they have not moved for ``seconds`` (the burst is worked off)."""
        deadline = time.monotonic() + timeout
        last = counters(self.metrics)
        while time.monotonic() < deadline:
            time.sleep(seconds)
            now = counters(self.metrics)
            if now == last:
                return now
            last = now
        raise TimeoutError(f"{self.variant}: still reconciling after {timeout:.0f}s")

    def status(self, plural: str) -> dict[str, Any]:
        obj: Any = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, plural, "app")
        return {"generation": obj["metadata"]["generation"], **(obj.get("status") or {})}

    def burst(self, n: int) -> dict[str, Any]:
        """``n`` changes of each resource back to back; what the operator did about them."""
        before = self.quiet()
        tags = []
        for _ in range(n):
            self.next += 1
            tags.append(f"bench-{self.next}")
            self.patch("migrations", {"image": migration_spec(tags[-1])["image"]})
        self.jobs.wait(expected_job(tags[-1]))
        minutes = []
        for _ in range(n):
            self.next += 1
            minutes.append(30 + self.next)
            self.patch("appconfigs", {"settings": appconfig_spec(minutes[-1])["settings"]})
        self.hashes.wait(expected_hash(minutes[-1]))
        after = self.quiet()
        migration, appconfig = self.status("migrations"), self.status("appconfigs")
        right = (
            migration.get("jobName") == expected_job(tags[-1])
            and migration.get("observedGeneration") == migration["generation"]
            and appconfig.get("configHash") == expected_hash(minutes[-1])
            and appconfig.get("observedGeneration") == appconfig["generation"]
        )
        delta = {label: count(after, key) - count(before, key) for label, key in BURST_COUNTERS}
        return {"delta": delta, "final status right": right}


# What a burst costs, from the operator's counters (a label prefix of each sample).
BURST_COUNTERS = (
    ("Migration reconciles", 'fastship_operator_reconciles_total{kind="migration"'),
    ("AppConfig reconciles", 'fastship_operator_reconciles_total{kind="appconfig"'),
    ("failed Migration runs", 'fastship_operator_reconciles_total{kind="migration",result="error"'),
    ("failed AppConfig runs", 'fastship_operator_reconciles_total{kind="appconfig",result="error"'),
    ("Jobs created", "fastship_operator_jobs_created_total"),
    ("rollouts", "fastship_operator_config_rollouts_total"),
    (
        "overlapping Migration runs",
        'fastship_operator_overlapping_reconciles_total{kind="migration"',
    ),
    (
        "overlapping AppConfig runs",
        'fastship_operator_overlapping_reconciles_total{kind="appconfig"',
    ),
)


def deployment() -> dict[str, Any]:
    return {
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
                            # The AppConfig's ConfigMap: the operator refuses settings that
                            # no container loads.
                            "envFrom": [{"configMapRef": {"name": "app-config"}}],
                        }
                    ]
                },
            },
        },
    }


def expected_job(tag: str) -> str:
    return mg.job_name("app", mg.spec_hash(mg.parse_spec(migration_spec(tag))))


def expected_hash(minutes: int) -> str:
    return ac.config_hash(ac.validate(appconfig_spec(minutes)).data)


def run(changes: int, variants: list[str], rounds: int, burst: int) -> int:
    samples: dict[str, dict[str, list[float]]] = {
        v: {"to_job": [], "to_annotation": []} for v in variants
    }
    bursts: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    errors: dict[str, list[str]] = {}
    with cluster() as kube, tempfile.TemporaryDirectory() as tmp:
        install_crds(kube)
        operators: list[Operator] = []
        try:
            for variant in variants:
                operators.append(Operator(kube, variant, Path(tmp)))
            for operator in operators:
                operator.start()
            per_round = max(1, changes // rounds)
            for r in range(rounds):
                turn = operators[r % len(operators) :] + operators[: r % len(operators)]
                for operator in turn:
                    to_job, to_annotation = operator.changes(per_round)
                    samples[operator.variant]["to_job"] += to_job
                    samples[operator.variant]["to_annotation"] += to_annotation
                    if burst:
                        bursts[operator.variant].append(operator.burst(burst))
                print(f"round {r + 1}/{rounds}, load average {os.getloadavg()[0]:.1f}", flush=True)
        finally:
            for operator in operators:
                errors[operator.variant] = operator.stop()
    for variant in variants:
        for line in errors.get(variant, [])[:5]:
            print(f"{variant}: operator error:", line)
        results = [
            summary("Migration change -> Job created", samples[variant]["to_job"]),
            summary("AppConfig change -> Deployment annotated", samples[variant]["to_annotation"]),
        ]
        print(json.dumps({"variant": variant, "results": results, "bursts": bursts[variant]}))
        for result in results:
            verdict = "met" if result["median_s"] < TARGET_MEDIAN else "MISSED"
            print(
                f"{variant}: {result['what']}: median {result['median_s'] * 1000:.0f} ms, "
                f"p95 {result['p95_s'] * 1000:.0f} ms over {result['n']} changes "
                f"(target median < {TARGET_MEDIAN:.0f} s: {verdict})"
            )
        if bursts[variant]:
            keys = bursts[variant][0]["delta"]
            medians = {k: statistics.median(b["delta"][k] for b in bursts[variant]) for k in keys}
            print(
                f"{variant}: burst of {burst} changes of each, median of {len(bursts[variant])}: "
                + ", ".join(f"{k} {v:g}" for k, v in medians.items())
                + f"; final status right in {sum(b['final status right'] for b in bursts[variant])}"
                f"/{len(bursts[variant])}"
            )
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.operator", description=__doc__)
    parser.add_argument("--changes", type=int, default=20, help="changes per resource")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also run the reconciles from kopf's own handlers (bench/operator_kopf.py), "
        "taking turns with the operator's work queue",
    )
    parser.add_argument("--rounds", type=int, default=1, help="turns of each variant")
    parser.add_argument(
        "--burst", type=int, default=0, help="also N changes back to back, each turn"
    )
    args = parser.parse_args()
    if not 1 <= args.changes <= 500 or not 1 <= args.rounds <= 50 or not 0 <= args.burst <= 100:
        parser.error("--changes 1..500, --rounds 1..50, --burst 0..100")
    variants = list(VARIANTS) if args.compare else ["work queue"]
    return run(args.changes, variants, args.rounds, args.burst)


if __name__ == "__main__":
    sys.exit(main())
