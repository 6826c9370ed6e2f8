"""The operator's API client side by side with the kept libraries that could replace it.

Each client runs in its own process (so that import time and memory are its own) under
the operator's ServiceAccount and Role, against the local control plane, and makes the
operator's typical calls in a loop: GET a Migration and the Deployment, create a
(suspended) Job, GET it, merge-patch the Migration's status and the Deployment's
annotations; then lists pods by label as many times, and makes 200 GETs with 10 in
flight. Clients take turns, round
after round (A B C, B C A, ...). Measured: the latency of each call (median over all
rounds), calls per second, the import time of the client on top of kopf, and the
process's RSS after the run.

``fastship_operator.kube`` (aiohttp, kopf's login) is always measured. lightkube and kr8s
are not dependencies of the project: install each into a folder of its own and name it,

    pip install --target /tmp/lightkube lightkube
    pip install --target /tmp/kr8s kr8s
    python -m bench.operator_client --lightkube /tmp/lightkube --kr8s /tmp/kr8s

A client whose folder is not given is left out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

GROUP, VERSION = "fastship.dev", "v1alpha1"
OPS = (
    "get Migration",
    "get Deployment",
    "create Job",
    "get Job",
    "patch status",
    "patch Deployment",
)
THROUGHPUT_CALLS = 200
IN_FLIGHT = 10


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"bench": "operator-client"}},
        "spec": {
            "suspend": True,  # no pods: the cluster's work is the same for every client
            "template": {
                "metadata": {"labels": {"bench": "operator-client"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
                },
            },
        },
    }


# --- the clients, each as the operator would use it: dicts in, dicts out -----------------

Calls = dict[str, Callable[[str], Awaitable[Any]]]


async def kube_py(ns: str) -> tuple[Calls, Callable[[], Awaitable[None]]]:
    from fastship_operator.kube import Kube, load_credentials

    kube = Kube(load_credentials())
    calls: Calls = {
        "get Migration": lambda _: kube.get_custom(ns, "migrations", "bench"),
        "get Deployment": lambda _: kube.get_deployment(ns, "app"),
        "create Job": lambda name: kube.create_job(ns, job(name)),
        "get Job": lambda name: kube.get_job(ns, name),
        "list pods": lambda _: kube.list_pods(ns, "bench=operator-client"),
        "patch status": lambda name: kube.patch_status(
            ns, "migrations", "bench", {"jobName": name}
        ),
        "patch Deployment": lambda name: kube.patch_deployment(
            ns, "app", {"metadata": {"annotations": {"bench": name}}}
        ),
    }
    return calls, kube.close


async def lightkube(ns: str) -> tuple[Calls, Callable[[], Awaitable[None]]]:
    # Neither library is a dependency: installed beside the project for this benchmark.
    from lightkube import AsyncClient, KubeConfig, codecs
    from lightkube.generic_resource import create_namespaced_resource
    from lightkube.resources.apps_v1 import Deployment
    from lightkube.resources.batch_v1 import Job
    from lightkube.resources.core_v1 import Pod
    from lightkube.types import PatchType

    migration = create_namespaced_resource(GROUP, VERSION, "Migration", "migrations")
    client = AsyncClient(
        KubeConfig.from_file(os.environ["KUBECONFIG"]), field_manager="fastship-operator"
    )

    async def list_pods(_: str) -> list[Any]:
        return [
            p.to_dict()
            async for p in client.list(Pod, namespace=ns, labels={"bench": "operator-client"})
        ]

    async def get(res: Any, name: str) -> Any:
        return (await client.get(res, name, namespace=ns)).to_dict()

    async def create(name: str) -> Any:
        return (await client.create(codecs.from_dict(job(name)), namespace=ns)).to_dict()

    async def patch(res: Any, name: str, body: dict[str, Any]) -> Any:
        obj = await client.patch(res, name, body, namespace=ns, patch_type=PatchType.MERGE)
        return obj.to_dict()

    calls: Calls = {
        "get Migration": lambda _: get(migration, "bench"),
        "get Deployment": lambda _: get(Deployment, "app"),
        "create Job": create,
        "get Job": lambda name: get(Job, name),
        "list pods": list_pods,
        "patch status": lambda name: patch(
            migration.Status, "bench", {"status": {"jobName": name}}
        ),
        "patch Deployment": lambda name: patch(
            Deployment, "app", {"metadata": {"annotations": {"bench": name}}}
        ),
    }
    return calls, client.close


async def kr8s(ns: str) -> tuple[Calls, Callable[[], Awaitable[None]]]:
    import kr8s.asyncio
    from kr8s.asyncio.objects import Deployment, Job, new_class

    api = await kr8s.asyncio.api(kubeconfig=os.environ["KUBECONFIG"])
    migration = new_class("Migration", version=f"{GROUP}/{VERSION}", namespaced=True)

    async def get(cls: Any, name: str) -> Any:
        return (await cls.get(name, namespace=ns, api=api)).raw

    async def create(name: str) -> Any:
        obj = await Job(job(name), namespace=ns, api=api)
        await obj.create()
        return obj.raw

    async def list_pods(_: str) -> list[Any]:
        return [
            p.raw
            async for p in api.async_get(
                "pods", namespace=ns, label_selector="bench=operator-client"
            )
        ]

    async def patch(cls: Any, name: str, body: dict[str, Any], subresource: str | None) -> Any:
        obj = await cls({"metadata": {"name": name, "namespace": ns}}, api=api)
        await obj.patch(body, type="merge", subresource=subresource)
        return obj.raw

    async def close() -> None:
        return None

    calls: Calls = {
        "get Migration": lambda _: get(migration, "bench"),
        "get Deployment": lambda _: get(Deployment, "app"),
        "create Job": create,
        "get Job": lambda name: get(Job, name),
        "list pods": list_pods,
        "patch status": lambda name: patch(
            migration, "bench", {"status": {"jobName": name}}, "status"
        ),
        "patch Deployment": lambda name: patch(
            Deployment, "app", {"metadata": {"annotations": {"bench": name}}}, None
        ),
    }
    return calls, close


CLIENTS = {"kube.py": kube_py, "lightkube": lightkube, "kr8s": kr8s}
MODULES = {"kube.py": "fastship_operator.kube", "lightkube": "lightkube", "kr8s": "kr8s.asyncio"}


def worker(client: str, ns: str, iterations: int, tag: str) -> dict[str, Any]:
    """One client's turn, in this process: import, calls, memory."""
    import importlib

    import kopf  # noqa: F401  (the operator process imports kopf in any case)

    rss_before = rss_mb()
    t0 = time.perf_counter()
    importlib.import_module(MODULES[client])
    import_s = time.perf_counter() - t0

    async def run() -> dict[str, Any]:
        calls, close = await CLIENTS[client](ns)
        latencies: dict[str, list[float]] = {op: [] for op in OPS}
        try:
            await calls["get Deployment"]("")  # connection and login, not measured
            t_loop = time.perf_counter()
            for i in range(iterations):
                name = f"{tag}-{i}"
                for op in OPS:
                    t = time.perf_counter()
                    await calls[op](name)
                    latencies[op].append(time.perf_counter() - t)
            loop_s = time.perf_counter() - t_loop
            # Apart from the writes: a list right after a write waits for the API server's
            # watch cache to reach that write (tens of ms, whatever the client).
            latencies["list pods"] = []
            for _ in range(iterations):
                t = time.perf_counter()
                await calls["list pods"]("")
                latencies["list pods"].append(time.perf_counter() - t)
            gate = asyncio.Semaphore(IN_FLIGHT)
            first = f"{tag}-0"

            async def one() -> None:
                async with gate:
                    await calls["get Job"](first)

            t_many = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(THROUGHPUT_CALLS)))
            many_s = time.perf_counter() - t_many
        finally:
            await close()
        return {
            "latencies": latencies,
            "calls_per_s_sequential": iterations * len(OPS) / loop_s,
            "gets_per_s_10_in_flight": THROUGHPUT_CALLS / many_s,
        }

    result = asyncio.run(run())
    return {
        "client": client,
        "import_s": import_s,
        "rss_after_mb": rss_mb(),
        "rss_added_mb": rss_mb() - rss_before,
        **result,
    }


# --- the parent: cluster, turns, summary ----------------------------------------------------


def run(rounds: int, iterations: int, paths: dict[str, str]) -> int:
    from bench.operator import cluster
    from tests.operator.harness import install_crds, service_account_kubeconfig

    clients = ["kube.py", *(c for c in ("lightkube", "kr8s") if paths.get(c))]
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in clients}
    with cluster() as kube, tempfile.TemporaryDirectory() as tmp:
        install_crds(kube)
        ns = kube.create_namespace(f"bench-client-{os.getpid()}")
        try:
            kubeconfig = service_account_kubeconfig(kube, ns, Path(tmp) / "operator.kubeconfig")
            kube.apply(
                [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "metadata": {"name": "app"},
                        "spec": {
                            "replicas": 0,
                            "selector": {"matchLabels": {"app": "app"}},
                            "template": {
                                "metadata": {"labels": {"app": "app"}},
                                "spec": {
                                    "containers": [
                                        {"name": "app", "image": "registry.k8s.io/pause:3.10"}
                                    ]
                                },
                            },
                        },
                    },
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "Migration",
                        "metadata": {"name": "bench"},
                        "spec": {
                            "image": "registry.example/fastship:bench",
                            "databaseSecretRef": {"name": "app-db", "key": "uri"},
                        },
                    },
                ],
                namespace=ns,
            )
            for r in range(rounds):
                order = clients[r % len(clients) :] + clients[: r % len(clients)]
                for client in order:
                    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
                    env.pop("KUBERNETES_SERVICE_HOST", None)
                    extra = paths.get(client)
                    root = str(Path(__file__).resolve().parent.parent)
                    env["PYTHONPATH"] = os.pathsep.join(
                        p for p in (extra, root, str(Path(root) / "operator")) if p
                    )
                    proc = subprocess.run(
                        [sys.executable, "-m", "bench.operator_client", "--worker", client,
                         "--namespace", ns, "--iterations", str(iterations),
                         "--tag", f"{client.replace('.', '')}-{r}"],
                        env=env, capture_output=True, text=True, timeout=600, check=False,
                    )  # fmt: skip
                    if proc.returncode != 0:
                        print(proc.stderr[-3000:], file=sys.stderr)
                        return 1
                    results[client].append(json.loads(proc.stdout.splitlines()[-1]))
                    kube.kubectl("delete", "jobs", "-n", ns, "-l", "bench=operator-client")
                print(f"round {r + 1}/{rounds} done, load average {os.getloadavg()[0]:.1f}")
        finally:
            kube.delete_namespace(ns)
    report(clients, results)
    return 0


def report(clients: list[str], results: dict[str, list[dict[str, Any]]]) -> None:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    header = ["", *clients]
    rows: list[list[str]] = []
    for op in (*OPS, "list pods"):
        ms = {c: med([x for r in results[c] for x in r["latencies"][op]]) * 1000 for c in clients}
        rows.append([f"{op}, median ms", *(f"{ms[c]:.2f}" for c in clients)])
    for key, label in (
        ("calls_per_s_sequential", "calls/s, one at a time"),
        ("gets_per_s_10_in_flight", f"GETs/s, {IN_FLIGHT} in flight"),
    ):
        rows.append([label, *(f"{med([r[key] for r in results[c]]):.0f}" for c in clients)])

    def row(label: str, key: str, scale: float = 1.0, digits: int = 1) -> list[str]:
        return [
            label,
            *(f"{med([r[key] for r in results[c]]) * scale:.{digits}f}" for c in clients),
        ]

    rows.append(row("import on top of kopf, ms", "import_s", 1000, 0))
    rows.append(row("RSS after the run, MB", "rss_after_mb"))
    rows.append(row("RSS added by import and calls, MB", "rss_added_mb"))
    sequential = {c: med([r["calls_per_s_sequential"] for r in results[c]]) for c in clients}
    rows.append(
        [
            "calls/s relative to kube.py",
            *(f"{sequential[c] / sequential['kube.py']:.2f}" for c in clients),
        ]
    )
    print("| " + " | ".join(header) + " |")
    print("|---|" + "---:|" * len(clients))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.operator_client",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=30, help="call sequences per turn")
    parser.add_argument("--lightkube", help="folder where lightkube is installed")
    parser.add_argument("--kr8s", help="folder where kr8s is installed")
    parser.add_argument("--worker", choices=sorted(CLIENTS), help=argparse.SUPPRESS)
    parser.add_argument("--namespace", help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="x", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 1 <= args.rounds <= 50 or not 1 <= args.iterations <= 1000:
        parser.error("--rounds must be 1..50 and --iterations 1..1000")
    if args.worker:
        print(json.dumps(worker(args.worker, args.namespace, args.iterations, args.tag)))
        return 0
    return run(args.rounds, args.iterations, {"lightkube": args.lightkube, "kr8s": args.kr8s})


if __name__ == "__main__":
    sys.exit(main())
