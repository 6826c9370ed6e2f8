"""fastship's operator with kopf's own scheduling instead of the work queue (bench only).

The same watches and the same reconciles (``fastship_operator.handlers.State``), but each
kopf event handler runs the reconcile itself, as kopf's examples do: kopf runs the
handlers of one watched object one at a time, in its own per-object worker. What this
leaves out is what kopf's event handlers do not offer: a reconcile's request to run
again later (kopf's timers and daemons would need a finalizer on every object), retries
of a failed run (kopf retries only change-detecting handlers, which store their progress
on the object), and one reconcile at a time per Migration or AppConfig when the events
come from another kind (its Jobs, its Deployment, its ConfigMap): those handlers run in
the other object's worker. Counts runs that overlap another run of the same object.

    python -m bench.operator_kopf --namespace NS [--liveness URL]
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import kopf
from prometheus_client import Counter

from fastship_operator import GROUP, MANAGED_BY, VERSION, metrics
from fastship_operator import appconfigs as ac
from fastship_operator import handlers as h
from fastship_operator import migrations as mg
from fastship_operator.main import METRICS_ENV, NAMESPACE_ENV, configure_logging

registry = kopf.OperatorRegistry()
OVERLAPS = Counter(
    "fastship_operator_overlapping_reconciles_total",
    "Reconciles started while another reconcile of the same object was running.",
    ["kind"],
    registry=metrics.REGISTRY,
)
running: dict[tuple[str, h.Key], int] = {}

kopf.on.startup(registry=registry)(h.configure)
kopf.on.login(registry=registry)(h.login)
kopf.on.cleanup(registry=registry)(h.shutdown)
kopf.index(GROUP, VERSION, ac.PLURAL, registry=registry)(h.appconfigs_by_deployment)


async def reconcile(kind: str, run: Callable[[h.Key], Awaitable[float | None]], key: h.Key) -> None:
    """One reconcile, counted as the operator counts its own."""
    slot = (kind, key)
    if running.get(slot):
        OVERLAPS.labels(kind).inc()
    running[slot] = running.get(slot, 0) + 1
    t0 = time.perf_counter()
    try:
        await run(key)
    except Exception:
        metrics.RECONCILES.labels(kind, "error").inc()
        raise
    else:
        metrics.RECONCILES.labels(kind, "ok").inc()
    finally:
        metrics.RECONCILE_SECONDS.labels(kind).observe(time.perf_counter() - t0)
        running[slot] -= 1


@kopf.on.event(GROUP, VERSION, mg.PLURAL, registry=registry)
async def migration_changed(
    body: kopf.Body, name: str, namespace: str | None, memo: Any, **_: Any
) -> None:
    current = h.state(memo)
    if current.in_scope(body):
        await reconcile("migration", current.reconcile_migration, (namespace or "", name))


@kopf.on.event(
    "batch", "v1", "jobs", labels={"app.kubernetes.io/managed-by": MANAGED_BY}, registry=registry
)
async def job_changed(body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    owner = mg.owner_name(body, mg.KIND)
    if owner:
        current = h.state(memo)
        await reconcile("migration", current.reconcile_migration, (namespace or "", owner))


@kopf.on.event(GROUP, VERSION, ac.PLURAL, registry=registry)
async def appconfig_changed(
    body: kopf.Body,
    name: str,
    namespace: str | None,
    memo: Any,
    appconfigs_by_deployment: kopf.Index[h.Key, str] | None = None,
    **_: Any,
) -> None:
    current = h.state(memo)
    if not current.in_scope(body):
        return
    await reconcile("appconfig", current.reconcile_appconfig, (namespace or "", name))
    deployment = str(((body.get("spec") or {}).get("deploymentRef") or {}).get("name") or "")
    if appconfigs_by_deployment is not None:
        for other in appconfigs_by_deployment.get((namespace or "", deployment), []):
            if other != name:
                await reconcile("appconfig", current.reconcile_appconfig, (namespace or "", other))


@kopf.on.event(
    "", "v1", "configmaps", labels={"app.kubernetes.io/managed-by": MANAGED_BY}, registry=registry
)
async def configmap_changed(body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    owner = ac.owner_name(body)
    if owner:
        current = h.state(memo)
        await reconcile("appconfig", current.reconcile_appconfig, (namespace or "", owner))


@kopf.on.event("apps", "v1", "deployments", registry=registry)
async def deployment_changed(
    body: kopf.Body,
    name: str,
    namespace: str | None,
    memo: Any,
    appconfigs_by_deployment: kopf.Index[h.Key, str] | None = None,
    **_: Any,
) -> None:
    current = h.state(memo)
    if appconfigs_by_deployment is None:
        return
    actual = ac.deployment_hash(body)
    generation = int((body.get("metadata") or {}).get("generation") or 0)
    changed = current.deployment_generations.get((namespace or "", name)) != generation
    for appconfig in appconfigs_by_deployment.get((namespace or "", name), []):
        key = (namespace or "", appconfig)
        if changed or key not in current.applied or current.applied[key] != actual:
            await reconcile("appconfig", current.reconcile_appconfig, key)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.operator_kopf", description=__doc__)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--liveness", default=None)
    args = parser.parse_args()
    os.environ[NAMESPACE_ENV] = args.namespace
    os.environ.setdefault(METRICS_ENV, "off")
    configure_logging(os.environ.get("FASTSHIP_OPERATOR_LOG_LEVEL", "INFO"))
    logging.getLogger("fastship_operator").info("kopf-scheduled variant, %s", args.namespace)
    kopf.run(
        registry=registry,
        namespaces=[args.namespace],
        standalone=True,
        liveness_endpoint=args.liveness,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
