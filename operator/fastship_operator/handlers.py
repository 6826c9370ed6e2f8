"""The kopf layer: watches, one reconcile per object kind, status writes and Events.

kopf watches the resources, authenticates, posts Events and serves the liveness probe.
Watch events only queue the object (see :mod:`fastship_operator.workqueue`); each
reconcile reads the current state, decides with the pure functions of
:mod:`fastship_operator.migrations` and :mod:`fastship_operator.appconfigs`, and writes
only what differs. Nothing is stored on the watched objects but their status, so the
operator needs no finalizers and no write access beyond status.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from fastship_operator import GROUP, MANAGED_BY, VERSION, metrics
from fastship_operator import appconfigs as ac
from fastship_operator import migrations as mg
from fastship_operator.conditions import FALSE, TRUE, Condition, find, now_rfc3339, status_patch
from fastship_operator.kube import ApiError, Kube, api_message, load_credentials
from fastship_operator.workqueue import WorkQueue

Key = tuple[str, str]
logger = logging.getLogger("fastship_operator")

# While a Job runs, its pods are polled at this interval for problems that produce no
# Job event (a missing Secret, an image that cannot be pulled).
POLL_RUNNING_SECONDS = 10.0
# A Job of a deleted Migration with the same name waits for the garbage collector.
WAIT_FOR_GC_SECONDS = 3.0
# A Migration whose image the Deployment does not run (yet: helm applies both at once)
# is looked at again after this long.
WAIT_FOR_IMAGE_SECONDS = 5.0

# The release whose objects this operator reconciles (label app.kubernetes.io/instance);
# unset: every Migration and AppConfig of the namespace.
INSTANCE_ENV = "FASTSHIP_OPERATOR_INSTANCE"
INSTANCE_LABEL = "app.kubernetes.io/instance"
# Comma-separated image patterns (shell globs) a Migration may run without being an
# image of the Deployment it gates.
ALLOWED_IMAGES_ENV = "FASTSHIP_OPERATOR_ALLOWED_IMAGES"
# host:port of /metrics and /readyz, or "off".
METRICS_ENV = "FASTSHIP_OPERATOR_METRICS"
# How long a successful readiness check of the API is reused.
READY_CACHE_SECONDS = 5.0
READY_TIMEOUT_SECONDS = 5.0


@dataclass
class State:
    """Per-run operator state, kept in kopf's memo."""

    kube: Kube | None = None
    migrations: WorkQueue[Key] = field(init=False)
    appconfigs: WorkQueue[Key] = field(init=False)
    # config hash each AppConfig rolled out, to ignore Deployment events that change nothing
    applied: dict[Key, str] = field(default_factory=dict)
    # generation of each Deployment at the last reconcile of an AppConfig on it
    deployment_generations: dict[Key, int] = field(default_factory=dict)
    # (generation, monotonic time) each AppConfig generation was first seen
    first_seen: dict[Key, tuple[int, float]] = field(default_factory=dict)
    instance: str | None = None
    namespace: str = ""
    allowed_images: tuple[str, ...] = ()
    started: bool = False
    endpoint: metrics.Endpoint | None = None
    _ready_until: float = 0.0

    def __post_init__(self) -> None:
        self.migrations = WorkQueue("migration", self._timed("migration", self.reconcile_migration))
        self.appconfigs = WorkQueue("appconfig", self._timed("appconfig", self.reconcile_appconfig))

    @staticmethod
    def _timed(kind: str, reconcile: Any) -> Any:
        async def run(key: Key) -> float | None:
            t0 = time.perf_counter()
            try:
                result: float | None = await reconcile(key)
            except Exception:
                metrics.RECONCILES.labels(kind, "error").inc()
                raise
            finally:
                metrics.RECONCILE_SECONDS.labels(kind).observe(time.perf_counter() - t0)
            metrics.RECONCILES.labels(kind, "ok").inc()
            return result

        return run

    def in_scope(self, obj: Mapping[str, Any]) -> bool:
        """Whether ``obj`` belongs to this operator's release (all objects without one)."""
        if not self.instance:
            return True
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return bool(labels.get(INSTANCE_LABEL) == self.instance)

    async def readiness(self) -> tuple[bool, str]:
        """Ready: start-up finished (kopf starts its watches after it) and the API server
        answers, with the operator's credentials, the list requests that each of its
        watches starts with (Migrations, AppConfigs, Jobs, Deployments, ConfigMaps)."""
        if not self.started or self.kube is None:
            return False, "starting: not logged in to the API server yet"
        if not self.namespace:
            return False, "no namespace to check: FASTSHIP_OPERATOR_NAMESPACE is not set"
        if time.monotonic() < self._ready_until:
            return True, ""
        namespace, kube = self.namespace, self.kube
        paths = [
            kube.custom_path(namespace, mg.PLURAL),
            kube.custom_path(namespace, ac.PLURAL),
            kube.path("batch/v1", namespace, "jobs"),
            kube.path("apps/v1", namespace, "deployments"),
            kube.path("v1", namespace, "configmaps"),
        ]
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                await asyncio.gather(
                    *(kube.request("GET", path, query={"limit": "1"}) for path in paths)
                )
        except (ApiError, OSError, TimeoutError) as exc:
            return False, f"the API server does not answer the operator's lists: {exc}"
        self._ready_until = time.monotonic() + READY_CACHE_SECONDS
        return True, ""

    @property
    def api(self) -> Kube:
        if self.kube is None:
            raise kopf.TemporaryError("not logged in to the API server yet", delay=1)
        return self.kube

    # --- Migration ------------------------------------------------------------------------

    async def reconcile_migration(self, key: Key) -> float | None:
        namespace, name = key
        migration = await self.api.get_custom(namespace, mg.PLURAL, name)
        if migration is None:
            self.migrations.forget(key)
            return None
        if not self.in_scope(migration):
            self.migrations.forget(key)
            return None
        meta = migration["metadata"]
        previous = migration.get("status") or {}
        requeue: float | None = None
        try:
            job_spec = mg.parse_spec(migration.get("spec") or {}, meta.get("annotations"))
        except mg.SpecError as exc:
            invalid = mg.JobOutcome(mg.PENDING, "InvalidSpec", str(exc))
            await self._write_migration(migration, None, invalid)
            return None
        hash_ = mg.spec_hash(job_spec)
        job_name = mg.job_name(name, hash_)
        outcome: mg.JobOutcome | None = None
        if previous.get("jobName") == job_name:
            job = await self.api.get_job(namespace, job_name)
            if job is None and previous.get("phase") in mg.TERMINAL:
                # Finished and since removed (TTL): the recorded outcome stands.
                outcome = mg.finished_outcome(previous)
            elif job is None:
                job, outcome = await self._create_job(migration, job_spec, job_name)
        else:
            # A spec this status does not know yet: create first (the fast path of a
            # change); a Job that exists already (a restart) answers 409 and is adopted.
            job, outcome = await self._create_job(migration, job_spec, job_name)
        if job is not None:
            owner = mg.controller_uid(job)
            if owner == meta["uid"]:
                pods = await self.api.list_pods(
                    namespace, f"batch.kubernetes.io/controller-uid={job['metadata']['uid']}"
                )
                outcome = mg.job_outcome(job, pods)
                if outcome.phase not in mg.TERMINAL:
                    requeue = POLL_RUNNING_SECONDS
            elif mg.owner_name(job, mg.KIND) == name:
                outcome = mg.JobOutcome(
                    mg.PENDING,
                    "JobPending",
                    f"Job {job_name} belongs to a deleted Migration of the same name; "
                    "waiting for the garbage collector to remove it",
                )
                requeue = WAIT_FOR_GC_SECONDS
            else:
                outcome = mg.JobOutcome(
                    mg.PENDING,
                    "JobNameConflict",
                    f"Job {job_name} exists and is not owned by this Migration: "
                    "delete or rename it",
                )
        assert outcome is not None
        if outcome.reason == "ImageNotAllowed":
            requeue = WAIT_FOR_IMAGE_SECONDS
        await self._write_migration(migration, job_name, outcome)
        return requeue

    async def _create_job(
        self, migration: Mapping[str, Any], job_spec: mg.JobSpec, job_name: str
    ) -> tuple[dict[str, Any] | None, mg.JobOutcome | None]:
        namespace = migration["metadata"]["namespace"]
        deployment_name = str(
            ((migration.get("spec") or {}).get("deploymentRef") or {}).get("name") or ""
        )
        deployment = (
            await self.api.get_deployment(namespace, deployment_name) if deployment_name else None
        )
        problem = mg.admission_problem(
            job_spec, deployment_name or None, deployment, self.allowed_images
        )
        if problem:
            metrics.REFUSED.labels("migration", "ImageNotAllowed").inc()
            return None, mg.JobOutcome(mg.PENDING, "ImageNotAllowed", problem)
        body = mg.build_job(migration, job_spec)
        try:
            job = await self.api.create_job(namespace, body)
        except ApiError as exc:
            if exc.status == 409:  # created meanwhile (by an earlier run of this operator)
                return await self.api.get_job(namespace, job_name), None
            if exc.status in (400, 403, 422):
                return None, mg.JobOutcome(
                    mg.PENDING, "JobRejected", f"creating Job {job_name}: {api_message(exc)}"
                )
            raise
        metrics.JOBS_CREATED.inc()
        _event(
            migration,
            type="Normal",
            reason="JobCreated",
            message=f"created Job {job_name} to migrate with {job_spec.image}",
        )
        logger.info(
            "created Job %s for Migration %s",
            job_name,
            migration["metadata"]["name"],
            extra={"namespace": namespace},
        )
        return job, None

    async def _write_migration(
        self, migration: Mapping[str, Any], job_name: str | None, outcome: mg.JobOutcome
    ) -> None:
        meta = migration["metadata"]
        previous = migration.get("status") or {}
        status = mg.build_status(
            previous=previous,
            generation=int(meta.get("generation") or 0),
            job_name=job_name,
            outcome=outcome,
            now=now_rfc3339(),
        )
        if mg.same_status(previous, status):
            return
        if status["phase"] in mg.TERMINAL and (
            previous.get("phase") != status["phase"] or previous.get("jobName") != job_name
        ):
            metrics.MIGRATION_JOBS.labels(status["phase"]).inc()
            seconds = _seconds_between(outcome.started_at, outcome.completed_at)
            if seconds is not None:
                metrics.MIGRATION_SECONDS.labels(status["phase"]).observe(seconds)
        await self.api.patch_status(
            meta["namespace"], mg.PLURAL, meta["name"], status_patch(previous, status)
        )
        logger.info(
            "Migration %s: %s (%s)",
            meta["name"],
            status["phase"],
            outcome.reason,
            extra={"namespace": meta["namespace"], "job": job_name, "detail": outcome.message},
        )
        before = find(previous, "Ready") or {}
        if (
            previous.get("phase") != status["phase"]
            or previous.get("jobName") != job_name
            or before.get("reason") != outcome.reason
        ):
            stalled = find(status, "Stalled") or {}
            _event(
                migration,
                type="Warning" if stalled.get("status") == TRUE else "Normal",
                reason=outcome.phase if outcome.phase in mg.TERMINAL else outcome.reason,
                message=outcome.message or outcome.phase,
            )

    # --- AppConfig ------------------------------------------------------------------------

    async def reconcile_appconfig(self, key: Key) -> float | None:
        namespace, name = key
        appconfig = await self.api.get_custom(namespace, ac.PLURAL, name)
        if appconfig is None:
            self.applied.pop(key, None)
            self.first_seen.pop(key, None)
            self.appconfigs.forget(key)
            return None
        if not self.in_scope(appconfig):
            self.applied.pop(key, None)
            self.appconfigs.forget(key)
            return None
        previous = appconfig.get("status") or {}
        spec = appconfig.get("spec") or {}
        generation = int(appconfig["metadata"].get("generation") or 0)
        if self.first_seen.get(key, (None, 0.0))[0] != generation:
            self.first_seen[key] = (generation, time.monotonic())
        deployment = str((spec.get("deploymentRef") or {}).get("name") or "")
        validation = ac.validate(spec)
        previous_hash = previous.get("configHash")
        applied_hash: str | None = previous_hash
        applied_at: str | None = previous.get("appliedAt")
        configmap: str | None = previous.get("configMapName")
        events: list[tuple[str, str, str]] = []
        claimed_by: str | None = None
        target: dict[str, Any] | None = None
        if validation.valid:
            others, target = await asyncio.gather(
                self.api.list_custom(namespace, ac.PLURAL),
                self.api.get_deployment(namespace, deployment),
            )
            first = ac.claimant([a for a in others if self.in_scope(a)], deployment)
            if first is not None and first != name:
                claimed_by = first
            elif target is not None:
                self.deployment_generations[(namespace, deployment)] = int(
                    target["metadata"].get("generation") or 0
                )
                gating = [
                    m["metadata"]["name"]
                    for m in await self.api.list_custom(namespace, mg.PLURAL)
                    if self.in_scope(m)
                    and ((m.get("spec") or {}).get("deploymentRef") or {}).get("name") == deployment
                ]
                validation = ac.check_against_deployment(name, validation.data, target, gating)

        if claimed_by is not None:
            applied = Condition(
                "Applied",
                FALSE,
                "DeploymentClaimed",
                f"Deployment {deployment} is configured by AppConfig {claimed_by}, which "
                "came first; nothing applied: merge these settings into "
                f"{claimed_by}, or delete one of the two",
            )
            metrics.REFUSED.labels("appconfig", "DeploymentClaimed").inc()
        elif not validation.valid:
            if validation.reason != "InvalidSettings":
                metrics.REFUSED.labels("appconfig", validation.reason).inc()
            applied = ac.applied_condition(
                validation=validation,
                deployment=deployment,
                found=True,
                hash_="",
                previous_hash=previous_hash,
            )
        else:
            hash_ = ac.config_hash(validation.data)
            current = await self.api.get_configmap(namespace, ac.configmap_name(name))
            conflict = await self._ensure_configmap(appconfig, validation.data, current)
            if conflict:
                applied = Condition("Applied", FALSE, "ConfigMapConflict", conflict)
            else:
                configmap = ac.configmap_name(name)
                applied = ac.applied_condition(
                    validation=validation,
                    deployment=deployment,
                    found=target is not None,
                    hash_=hash_,
                    previous_hash=previous_hash,
                )
                if target is not None:
                    if ac.deployment_hash(target) != hash_:
                        await self.api.patch_deployment(
                            namespace, deployment, ac.deployment_patch(hash_)
                        )
                        metrics.CONFIG_ROLLOUTS.inc()
                        seen = self.first_seen.get(key)
                        if seen is not None and seen[0] == generation:
                            metrics.CONFIG_APPLY_SECONDS.observe(time.monotonic() - seen[1])
                        applied_at = now_rfc3339()
                        events.append(
                            (
                                "Normal",
                                "Applied",
                                f"Deployment {deployment} rolls out config hash {hash_}",
                            )
                        )
                    elif previous_hash != hash_ or not applied_at:
                        applied_at = now_rfc3339()
                    applied_hash = hash_
                    self.applied[key] = hash_

        status = ac.build_status(
            previous=previous,
            generation=generation,
            validation=validation,
            applied=applied,
            applied_hash=applied_hash,
            applied_at=applied_at,
            configmap=configmap,
            now=now_rfc3339(),
        )
        if status != previous:
            await self.api.patch_status(namespace, ac.PLURAL, name, status_patch(previous, status))
            valid_before = find(previous, "Valid") or {}
            valid_now = find(status, "Valid") or {}
            if not validation.valid and (
                valid_before.get("status") != FALSE
                or valid_before.get("message") != valid_now.get("message")
            ):
                events.append(("Warning", "InvalidSettings", str(valid_now.get("message"))))
            applied_before = find(previous, "Applied") or {}
            if (
                (validation.valid or claimed_by is not None)
                and applied.status == FALSE
                and applied_before.get("reason") != applied.reason
            ):
                events.append(("Warning", applied.reason, applied.message))
        for type_, reason, message in events:
            logger.info(
                "AppConfig %s: %s",
                name,
                reason,
                extra={"namespace": namespace, "detail": message},
            )
            _event(appconfig, type=type_, reason=reason, message=message)
        return None

    async def _ensure_configmap(
        self,
        appconfig: Mapping[str, Any],
        data: Mapping[str, str],
        current: dict[str, Any] | None,
    ) -> str | None:
        """Create or update ConfigMap ``<name>-config`` (``current``: as read just now);
        a message if someone else owns it."""
        meta = appconfig["metadata"]
        wanted = ac.build_configmap(appconfig, data)
        name = wanted["metadata"]["name"]
        recorded = (appconfig.get("status") or {}).get("configMapName") == name
        if current is None:
            if recorded:  # it existed, and someone deleted it
                metrics.CONFIGMAP_REPAIRS.inc()
            try:
                await self.api.create_configmap(meta["namespace"], wanted)
            except ApiError as exc:
                if exc.status != 409:
                    raise
                current = await self.api.get_configmap(meta["namespace"], name)
            if current is None:
                return None
        if mg.controller_uid(current) != meta["uid"]:
            return (
                f"ConfigMap {name} exists and is not owned by this AppConfig: "
                "delete it, and the operator creates its own"
            )
        current_meta = current.get("metadata") or {}
        if (current.get("data") or {}) == wanted["data"] and (
            current_meta.get("annotations") or {}
        ).get(ac.HASH_ANNOTATION) == wanted["metadata"]["annotations"][ac.HASH_ANNOTATION]:
            return None
        if (
            recorded
            and (current_meta.get("annotations") or {}).get(ac.HASH_ANNOTATION)
            == wanted["metadata"]["annotations"][ac.HASH_ANNOTATION]
        ):
            metrics.CONFIGMAP_REPAIRS.inc()  # same settings, different data: someone edited it
        wanted["metadata"]["resourceVersion"] = current_meta.get("resourceVersion")
        # Keep labels and annotations that others (kubectl users, policies) added.
        wanted["metadata"]["labels"] = {
            **(current_meta.get("labels") or {}),
            **wanted["metadata"]["labels"],
        }
        wanted["metadata"]["annotations"] = {
            **(current_meta.get("annotations") or {}),
            **wanted["metadata"]["annotations"],
        }
        await self.api.replace_configmap(meta["namespace"], wanted)
        return None

    async def close(self) -> None:
        if self.endpoint is not None:
            await self.endpoint.stop()
        await self.migrations.close()
        await self.appconfigs.close()
        if self.kube is not None:
            await self.kube.close()


def _seconds_between(start: str | None, end: str | None) -> float | None:
    from datetime import datetime

    if not start or not end:
        return None
    try:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _event(obj: Mapping[str, Any], *, type: str, reason: str, message: str) -> None:
    """A Kubernetes Event on ``obj``, posted by kopf in the background."""
    kopf.event(cast(kopf.Body, obj), type=type, reason=reason, message=message[:1024])


def state(memo: Any) -> State:
    """The operator state in kopf's memo (created on first use)."""
    current = getattr(memo, "fastship", None)
    if not isinstance(current, State):
        current = State()
        memo.fastship = current
    return current


# --- kopf registrations -----------------------------------------------------------------


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    # Events come from the reconciles at each transition; kopf's own per-object log
    # lines are posted as Events only when they are warnings.
    settings.posting.level = logging.WARNING
    # The CRDs are installed with the chart; a namespaced Role cannot watch CRDs anyway.
    settings.scanning.disabled = True
    # One replica; kopf's peering resources are not installed.
    settings.peering.standalone = True
    settings.watching.connect_timeout = 30
    current = state(memo)
    current.instance = os.environ.get(INSTANCE_ENV, "").strip() or None
    current.namespace = os.environ.get("FASTSHIP_OPERATOR_NAMESPACE", "").strip()
    current.allowed_images = tuple(
        p.strip() for p in os.environ.get(ALLOWED_IMAGES_ENV, "").split(",") if p.strip()
    )
    address = os.environ.get(METRICS_ENV, "off").strip()
    if address.lower() != "off":
        host, colon, port = address.rpartition(":")
        if not colon or not port.isdigit():
            raise kopf.PermanentError(f"{METRICS_ENV} must be host:port or off, not {address!r}")
        current.endpoint = metrics.Endpoint(current.readiness)
        try:
            await current.endpoint.start(host or "0.0.0.0", int(port))  # noqa: S104
        except OSError as exc:
            raise kopf.PermanentError(
                f"cannot serve /metrics and /readyz on {address} ({exc}): choose another "
                f"port with --metrics or {METRICS_ENV}"
            ) from None
    logger.info(
        "reconciling %s",
        f"release {current.instance}" if current.instance else "every release",
        extra={
            "allowed_images": ",".join(current.allowed_images) or "none",
            "metrics": address,
        },
    )
    current.started = True


@kopf.on.login()
async def login(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> kopf.ConnectionInfo:
    """kopf's credentials, which the operator's own requests use too: at the start, and
    again whenever kopf's requests are refused with 401."""
    credentials = load_credentials(settings)
    current = state(memo)
    if current.kube is None:
        current.kube = Kube(credentials, relogin=functools.partial(load_credentials, settings))
    else:
        current.kube.use(credentials)
    return credentials


@kopf.on.cleanup()
async def shutdown(memo: Any, **_: Any) -> None:
    await state(memo).close()


@kopf.on.probe(id="reconciles")
async def reconciles(memo: Any, **_: Any) -> int:
    """Liveness detail: objects with a reconcile in flight or scheduled."""
    current = state(memo)
    return current.migrations.pending + current.appconfigs.pending


@kopf.on.event(GROUP, VERSION, mg.PLURAL)
async def migration_changed(
    body: kopf.Body, name: str, namespace: str | None, memo: Any, **_: Any
) -> None:
    current = state(memo)
    if current.in_scope(body):
        current.migrations.add((namespace or "", name))


@kopf.on.event("batch", "v1", "jobs", labels={"app.kubernetes.io/managed-by": MANAGED_BY})
async def job_changed(body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    owner = mg.owner_name(body, mg.KIND)
    if owner:
        state(memo).migrations.add((namespace or "", owner))


@kopf.index(GROUP, VERSION, ac.PLURAL)
def appconfigs_by_deployment(
    spec: kopf.Spec, name: str, namespace: str | None, **_: Any
) -> dict[Key, str]:
    deployment = str((spec.get("deploymentRef") or {}).get("name") or "")
    return {(namespace or "", deployment): name}


@kopf.on.event(GROUP, VERSION, ac.PLURAL)
async def appconfig_changed(
    body: kopf.Body,
    name: str,
    namespace: str | None,
    memo: Any,
    appconfigs_by_deployment: kopf.Index[Key, str] | None = None,
    **_: Any,
) -> None:
    current = state(memo)
    if not current.in_scope(body):
        return
    current.appconfigs.add((namespace or "", name))
    # Another AppConfig of the same Deployment may configure it now (this one was
    # deleted) or be refused now (this one came first).
    deployment = str(((body.get("spec") or {}).get("deploymentRef") or {}).get("name") or "")
    if appconfigs_by_deployment is not None:
        for other in appconfigs_by_deployment.get((namespace or "", deployment), []):
            if other != name:
                current.appconfigs.add((namespace or "", other))


@kopf.on.event("", "v1", "configmaps", labels={"app.kubernetes.io/managed-by": MANAGED_BY})
async def configmap_changed(body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    """An AppConfig's ConfigMap was changed or deleted: write it again, so that pods that
    start meanwhile do not run with other settings or the service's defaults."""
    owner = ac.owner_name(body)
    if owner:
        state(memo).appconfigs.add((namespace or "", owner))


@kopf.on.event("apps", "v1", "deployments")
async def deployment_changed(
    body: kopf.Body,
    name: str,
    namespace: str | None,
    memo: Any,
    appconfigs_by_deployment: kopf.Index[Key, str] | None = None,
    **_: Any,
) -> None:
    """Look at the AppConfigs of a Deployment again when it appears, loses the config hash
    (a helm upgrade that renders the pod template afresh, a kubectl edit), or changes its
    spec (its env decides what the AppConfig may set)."""
    current = state(memo)
    actual = ac.deployment_hash(body)
    if appconfigs_by_deployment is None:
        return
    generation = int((body.get("metadata") or {}).get("generation") or 0)
    changed = current.deployment_generations.get((namespace or "", name)) != generation
    for appconfig in appconfigs_by_deployment.get((namespace or "", name), []):
        key = (namespace or "", appconfig)
        if changed or key not in current.applied or current.applied[key] != actual:
            current.appconfigs.add(key)
