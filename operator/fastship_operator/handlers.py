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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from fastship_operator import GROUP, MANAGED_BY, VERSION
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


@dataclass
class State:
    """Per-run operator state, kept in kopf's memo."""

    kube: Kube | None = None
    migrations: WorkQueue[Key] = field(init=False)
    appconfigs: WorkQueue[Key] = field(init=False)
    # config hash each AppConfig rolled out, to ignore Deployment events that change nothing
    applied: dict[Key, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.migrations = WorkQueue("migration", self.reconcile_migration)
        self.appconfigs = WorkQueue("appconfig", self.reconcile_appconfig)

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
        await self._write_migration(migration, job_name, outcome)
        return requeue

    async def _create_job(
        self, migration: Mapping[str, Any], job_spec: mg.JobSpec, job_name: str
    ) -> tuple[dict[str, Any] | None, mg.JobOutcome | None]:
        namespace = migration["metadata"]["namespace"]
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
            self.appconfigs.forget(key)
            return None
        previous = appconfig.get("status") or {}
        spec = appconfig.get("spec") or {}
        deployment = str((spec.get("deploymentRef") or {}).get("name") or "")
        validation = ac.validate(spec)
        previous_hash = previous.get("configHash")
        applied_hash: str | None = previous_hash
        applied_at: str | None = previous.get("appliedAt")
        configmap: str | None = previous.get("configMapName")
        events: list[tuple[str, str, str]] = []

        if not validation.valid:
            applied = ac.applied_condition(
                validation=validation,
                deployment=deployment,
                found=True,
                hash_="",
                previous_hash=previous_hash,
            )
        else:
            hash_ = ac.config_hash(validation.data)
            current, target = await asyncio.gather(
                self.api.get_configmap(namespace, ac.configmap_name(name)),
                self.api.get_deployment(namespace, deployment),
            )
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
            generation=int(appconfig["metadata"].get("generation") or 0),
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
                validation.valid
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
        if current is None:
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
        await self.migrations.close()
        await self.appconfigs.close()
        if self.kube is not None:
            await self.kube.close()


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
    state(memo)


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
async def migration_changed(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    state(memo).migrations.add((namespace or "", name))


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
async def appconfig_changed(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    state(memo).appconfigs.add((namespace or "", name))


@kopf.on.event("apps", "v1", "deployments")
async def deployment_changed(
    body: kopf.Body,
    name: str,
    namespace: str | None,
    memo: Any,
    appconfigs_by_deployment: kopf.Index[Key, str] | None = None,
    **_: Any,
) -> None:
    """Re-apply the config hash when a Deployment appears or loses it (a helm upgrade
    that renders the pod template afresh, a kubectl edit)."""
    current = state(memo)
    actual = ac.deployment_hash(body)
    if appconfigs_by_deployment is None:
        return
    for appconfig in appconfigs_by_deployment.get((namespace or "", name), []):
        key = (namespace or "", appconfig)
        if key not in current.applied or current.applied[key] != actual:
            current.appconfigs.add(key)
