"""The operator's own HTTP endpoint: Prometheus metrics at ``/metrics`` and readiness at
``/readyz``, on a port of their own (kopf's liveness endpoint is separate).

The metrics live in a registry of their own, so that the service's metrics (the same
package is importable) never show up here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "fastship_operator_reconciles_total",
    "Reconciles by kind (migration, appconfig) and result (ok, error).",
    ["kind", "result"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "fastship_operator_reconcile_duration_seconds",
    "Time one reconcile takes, by kind.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
MIGRATION_JOBS = Counter(
    "fastship_operator_migration_jobs_total",
    "Migration Jobs that finished, by outcome (Succeeded, Failed).",
    ["outcome"],
    registry=REGISTRY,
)
MIGRATION_SECONDS = Histogram(
    "fastship_operator_migration_duration_seconds",
    "Time from a migration Job's start to its end, by outcome.",
    ["outcome"],
    buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
    registry=REGISTRY,
)
JOBS_CREATED = Counter(
    "fastship_operator_jobs_created_total",
    "Migration Jobs the operator created.",
    registry=REGISTRY,
)
REFUSED = Counter(
    "fastship_operator_refused_total",
    "Reconciles that refused what an object asks for, by kind and reason (e.g. "
    "ImageNotAllowed, ConflictsWithDeployment, DeploymentClaimed).",
    ["kind", "reason"],
    registry=REGISTRY,
)
CONFIG_APPLY_SECONDS = Histogram(
    "fastship_operator_config_apply_seconds",
    "Time from the operator first seeing an AppConfig generation to the Deployment "
    "annotated with its config hash.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
CONFIG_ROLLOUTS = Counter(
    "fastship_operator_config_rollouts_total",
    "Deployment pod templates the operator annotated with a new config hash.",
    registry=REGISTRY,
)
CONFIGMAP_REPAIRS = Counter(
    "fastship_operator_configmap_repairs_total",
    "ConfigMaps written again because they were changed or deleted by someone else.",
    registry=REGISTRY,
)


class Endpoint:
    """aiohttp server of ``/metrics`` and ``/readyz`` on the operator's event loop.

    ``ready`` answers (ok, reason); ``/readyz`` is 200 with "ok" or 503 with the reason.
    """

    def __init__(self, ready: Callable[[], Awaitable[tuple[bool, str]]]) -> None:
        self._ready = ready
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _readyz(self, _request: web.Request) -> web.Response:
        ok, reason = await self._ready()
        return web.Response(status=200 if ok else 503, text=("ok" if ok else reason) + "\n")

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        addresses = runner.addresses
        self.port = int(addresses[0][1]) if addresses else port

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
