"""The reconcile core: watch every object, converge each one, publish what routers need.

Pipeline (level-triggered, style rule 13): the platform's resource watch feeds a cache;
each change enqueues the object and the objects that read it (a model's applications;
the endpoints that may route to an application, only when what they read of it — its
served name, deletion, ready backends — changed) on a `SerialQueue`; a handler then
works from the object's *current* spec: pure builders (`plans`, `statuses`,
`publications`) say what should be, the platform converges workloads and reports
observations, and only owned status fields are written. A replayed or stale event
therefore converges to the same result, and a full pass every `resync_period` repairs
anything a lost event left behind.

Handlers per kind:
- ArksModel: finalizer; `platform.ensure_model` (download through the model cache, or
  existing storage); status. A model Ready for its current generation is left alone.
- ArksApplication / ArksDisaggregatedApplication: finalizer; Precheck (the platform's
  checks), the model (Loaded), `platform.ensure_workload(plan)`, status; on deletion the
  workload is stopped before the finalizer goes.
- ArksEndpoint: RouteTable in KV `arks-routes` and `status.routes`.
- ArksToken (all tokens at once, key "tokens"): TokenGrants in KV `arks-tokens`.
- ArksQuota: QuotaSpec in KV `arks-quotas`; conditions only (the accountant owns usage).
- "gc": workloads and KV entries whose object is gone (after a full snapshot only).

Objects that no longer validate get `Ready=False/InvalidSpec` naming the field.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from arks_common import resources, subjects
from arks_common.errors import RetryableError
from arks_common.messaging import Bus
from arks_common.runtime import until_set
from arks_common.store import Obj, ObjectRef, StoreChange, StoreSnapshot
from arks_reconciler import plans, publications, statuses
from arks_reconciler.caching import (
    APPLICATION,
    APPLICATION_KINDS,
    DISAGGREGATED,
    ENDPOINT,
    MODEL,
    QUOTA,
    TOKEN,
    ResourceCache,
    deleting,
    ref_of,
)
from arks_reconciler.leading import LeadershipLost
from arks_reconciler.platform import Backend, ModelState, Platform, WorkloadObservation
from arks_reconciler.publishing import KvMirror
from arks_reconciler.queueing import SerialQueue
from arks_reconciler.scraping import ScrapeTarget
from arks_reconciler.settings import QueueSettings
from arks_reconciler.status_writing import (
    CONDITION_KEYS,
    PHASED_KINDS,
    StatusWriter,
    dump_status,
)
from arks_reconciler.statuses import Cond

log = logging.getLogger(__name__)

DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TOKENS_KEY: Final = "tokens"
GC_KEY: Final = "gc"
Key = ObjectRef | str


def utcnow() -> datetime:
    return datetime.now(UTC)


class Reconciler:
    def __init__(self, platform: Platform, bus: Bus, settings: QueueSettings) -> None:
        self.platform = platform
        self.bus = bus
        self.settings = settings
        self.cache = ResourceCache()
        self.queue: SerialQueue[Key] = SerialQueue(
            self._reconcile,
            workers=settings.workers,
            retry_initial=settings.retry_initial,
            retry_max=settings.retry_max,
        )
        self.status = StatusWriter(
            platform.resources,
            bus,
            on_change=platform.record_event,
            on_written=self._status_written,
        )
        self.routes = KvMirror(bus, subjects.ROUTES_BUCKET)
        self.tokens = KvMirror(bus, subjects.TOKENS_BUCKET)
        self.quotas = KvMirror(bus, subjects.QUOTAS_BUCKET)
        self.synced = asyncio.Event()
        """Set once the first full snapshot has been queued."""
        self._routing_views: dict[ObjectRef, tuple[str, bool, tuple[Backend, ...]]] = {}
        """What endpoints read of each application when it was last reconciled."""
        self.counts: dict[tuple[str, str], int] = {}
        """Reconciles by (kind or key, result), for the metrics."""
        self.durations: dict[str, list[float]] = {}
        """Per kind or key: reconciles per `DURATION_BUCKETS` bucket (+Inf last), then the
        sum of seconds, for the duration histogram."""

    # ------------------------------------------------------------------ running
    async def run(self, stop: asyncio.Event) -> None:
        """Campaign for leadership; once leading, watch, reconcile and publish until
        `stop`. Losing leadership raises `LeadershipLost` (the service exits 75)."""
        leadership = self.platform.leadership
        async with asyncio.TaskGroup() as tg:
            tg.create_task(leadership.run(stop), name="reconciler:leadership")
            if await until_set(leadership.leading, stop):
                tg.create_task(self._lead(stop), name="reconciler:lead")
                tg.create_task(self._keep_leading(stop), name="reconciler:keep-leading")

    async def _keep_leading(self, stop: asyncio.Event) -> None:
        if await until_set(self.platform.leadership.lost, stop):
            raise LeadershipLost("this reconciler lost its leadership; another one acts now")

    async def _lead(self, stop: asyncio.Event) -> None:
        for mirror in (self.routes, self.tokens, self.quotas):
            await mirror.load()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.queue.run(stop), name="reconciler:queue")
            tg.create_task(self.platform.run(self.notify, stop), name="reconciler:platform")
            tg.create_task(self._watch(stop), name="reconciler:watch")
            tg.create_task(self._resync(stop), name="reconciler:resync")

    def _status_written(self, obj: Obj) -> None:
        """Our status write's answer: newer than the cache until the watch brings it."""
        self.cache.put(ObjectRef.of(obj), obj)

    def notify(self, ref: ObjectRef) -> None:
        """The platform saw a change of `ref`'s workload."""
        self.queue.add(ref)
        for dependent in self.cache.dependents(ref):
            self.queue.add(dependent)

    async def _watch(self, stop: asyncio.Event) -> None:
        async for update in self.platform.resources.watch(stop=stop):
            if isinstance(update, StoreSnapshot):
                for ref in self.cache.replace(update.objects, update.kinds):
                    self.queue.add(ref)
                self.queue.add(TOKENS_KEY)
                self.queue.add(GC_KEY)
                self.synced.set()
            elif isinstance(update, StoreChange):
                before = self.cache.put(update.ref, update.obj)
                self.queue.add(update.ref)
                for dependent in self.cache.dependents(update.ref, before):
                    self.queue.add(dependent)
                if update.ref.kind in (TOKEN, QUOTA, ENDPOINT):
                    self.queue.add(TOKENS_KEY)

    async def _resync(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.resync_period)
            if stop.is_set() or not self.cache.synced:
                continue
            for ref in self.cache.refs():
                self.queue.add(ref)
            self.queue.add(TOKENS_KEY)
            self.queue.add(GC_KEY)

    def scrape_targets(self) -> list[ScrapeTarget]:
        targets = []
        for kind in APPLICATION_KINDS:
            for ref in self.cache.refs(kind):
                entry = self.cache.entry(ref)
                if entry is None or entry.typed is None or deleting(entry.typed):
                    continue
                targets.append(ScrapeTarget(ref, self.platform.backends(ref)))
        return targets

    # ------------------------------------------------------------------ dispatch
    async def _reconcile(self, key: Key) -> None:
        label = key.kind if isinstance(key, ObjectRef) else key
        result = "error"
        started = time.perf_counter()
        try:
            await self._dispatch(key)
            result = "ok"
        except RetryableError:
            result = "retry"
            raise
        finally:
            self.counts[(label, result)] = self.counts.get((label, result), 0) + 1
            self._observe_duration(label, time.perf_counter() - started)

    def _observe_duration(self, label: str, seconds: float) -> None:
        row = self.durations.setdefault(label, [0.0] * (len(DURATION_BUCKETS) + 2))
        index = next(
            (i for i, bound in enumerate(DURATION_BUCKETS) if seconds <= bound),
            len(DURATION_BUCKETS),
        )
        row[index] += 1
        row[-1] += seconds

    async def _dispatch(self, key: Key) -> None:
        if not self.cache.synced:
            # Before the first snapshot an absent object proves nothing (it would look
            # deleted); the snapshot enqueues every object anyway.
            return
        if key == TOKENS_KEY:
            await self._sync_tokens()
            return
        if key == GC_KEY:
            await self._collect_garbage()
            return
        assert isinstance(key, ObjectRef)
        try:
            await self._dispatch_object(key)
        finally:
            if key.kind in APPLICATION_KINDS:
                self._note_routing(key)

    async def _dispatch_object(self, key: ObjectRef) -> None:
        entry = self.cache.entry(key)
        if entry is None:
            await self._gone(key)
            return
        if entry.typed is None:
            await self._invalid(entry.raw, str(entry.error))
            return
        resource = entry.typed
        if isinstance(resource, resources.ArksModel):
            await self._model(resource, entry.raw)
        elif isinstance(resource, resources.ArksApplication):
            await self._application(resource, entry.raw)
        elif isinstance(resource, resources.ArksDisaggregatedApplication):
            await self._disaggregated(resource, entry.raw)
        elif isinstance(resource, resources.ArksEndpoint):
            await self._endpoint(resource, entry.raw)
        elif isinstance(resource, resources.ArksQuota):
            await self._quota(resource, entry.raw)
        # ArksToken changes are handled together under TOKENS_KEY.

    async def _gone(self, ref: ObjectRef) -> None:
        if ref.kind in APPLICATION_KINDS:
            await self.platform.delete_workload(ref)
        elif ref.kind == MODEL:
            await self.platform.delete_model(ref)
        elif ref.kind == ENDPOINT:
            await self.routes.delete(subjects.namespaced_key(ref.namespace, ref.name))
            await self.platform.delete_gateway_route(ref)
        elif ref.kind == QUOTA:
            await self.quotas.delete(subjects.namespaced_key(ref.namespace, ref.name))

    async def _invalid(self, raw: Obj, message: str) -> None:
        kind = str(raw.get("kind"))
        generation = (raw.get("metadata") or {}).get("generation")
        cond = resources.Condition(
            type=statuses.READY,
            status="False",
            reason="InvalidSpec",
            message=f"The object does not validate; fix it and apply again: {message}",
            observed_generation=generation,
        )
        previous = [
            resources.Condition.model_validate(c)
            for c in (raw.get("status") or {}).get("conditions") or []
            if isinstance(c, dict) and c.get("type") == statuses.READY
        ]
        merged = resources.set_condition(previous, cond, now=utcnow())
        status: dict[str, Any] = {
            "conditions": [
                c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in merged
            ]
        }
        if generation is not None:
            status["observedGeneration"] = generation
        owned = set(CONDITION_KEYS)
        if kind in PHASED_KINDS:
            status["phase"] = "Failed"
            owned.add("phase")
        await self.status.write(raw, status, owned=owned)

    # ------------------------------------------------------------------ finalizers
    async def _add_finalizer(self, resource: resources.AnyResource, name: str) -> bool:
        """True if it had to be added (the write re-triggers this object)."""
        if name in resource.metadata.finalizers:
            return False
        ref = ref_of(resource)
        await self.platform.resources.set_finalizers(
            ref.kind, ref.namespace, ref.name, [*resource.metadata.finalizers, name]
        )
        return True

    async def _remove_finalizer(self, resource: resources.AnyResource, name: str) -> None:
        if name not in resource.metadata.finalizers:
            return
        ref = ref_of(resource)
        rest = [f for f in resource.metadata.finalizers if f != name]
        # A store that keeps changing raises its ConflictError (retryable): queued again.
        await self.platform.resources.set_finalizers(ref.kind, ref.namespace, ref.name, rest)

    # ------------------------------------------------------------------ models
    async def _model(self, model: resources.ArksModel, raw: Obj) -> None:
        ref = ref_of(model)
        if deleting(model):
            await self.platform.delete_model(ref)
            await self._remove_finalizer(model, plans.MODEL_FINALIZER)
            return
        await self._add_finalizer(model, plans.MODEL_FINALIZER)
        status = model.status
        if (
            status is not None
            and status.phase == resources.ModelPhase.READY
            and status.observed_generation == model.metadata.generation
            and status.path
        ):
            return  # ready for this spec: nothing to converge
        observation = await self.platform.ensure_model(model)
        new = statuses.model_status(model, observation, now=utcnow())
        await self.status.write(raw, dump_status(new))
        if observation.retry_after is not None and observation.state is not ModelState.READY:
            self.queue.add(ref, observation.retry_after)

    def _model_of(self, namespace: str, name: str) -> resources.ArksModel | None:
        model = self.cache.get(ObjectRef(MODEL, namespace, name), resources.ArksModel)
        return model

    @staticmethod
    def _model_ready(model: resources.ArksModel | None) -> bool:
        return (
            model is not None
            and model.status is not None
            and model.status.phase == resources.ModelPhase.READY
        )

    # ------------------------------------------------------------------ applications
    async def _application(self, app: resources.ArksApplication, raw: Obj) -> None:
        ref = ref_of(app)
        if deleting(app):
            await self.platform.delete_workload(ref)
            await self._remove_finalizer(app, plans.APPLICATION_FINALIZER)
            return
        await self._add_finalizer(app, plans.APPLICATION_FINALIZER)
        problems = self.platform.check(app)
        model = self._model_of(app.namespace, app.spec.model.name)
        observation: WorkloadObservation | None
        if not problems and model is not None and self._model_ready(model):
            observation = await self.platform.ensure_workload(plans.application_plan(app, model))
        else:
            observation = self.platform.observe_workload(ref)
        new = statuses.application_status(
            app, model=model, problems=problems, observation=observation, now=utcnow()
        )
        await self.status.write(raw, dump_status(new))

    async def _disaggregated(self, app: resources.ArksDisaggregatedApplication, raw: Obj) -> None:
        ref = ref_of(app)
        if deleting(app):
            await self.platform.delete_workload(ref)
            await self._remove_finalizer(app, plans.APPLICATION_FINALIZER)
            return
        await self._add_finalizer(app, plans.APPLICATION_FINALIZER)
        problems = self.platform.check(app)
        entry_role = self.platform.entry_role(app)
        model = self._model_of(app.namespace, app.spec.model.name)
        observation: WorkloadObservation | None
        if not problems and model is not None and self._model_ready(model):
            plan = plans.disaggregated_plan(app, model, entry_role=entry_role)
            observation = await self.platform.ensure_workload(plan)
        else:
            observation = self.platform.observe_workload(ref)
        new = statuses.disaggregated_status(
            app,
            model=model,
            problems=problems,
            observation=observation,
            entry_role=entry_role,
            router_runs=entry_role == plans.ROUTER_ROLE,
            now=utcnow(),
        )
        await self.status.write(raw, dump_status(new))

    def _note_routing(self, ref: ObjectRef) -> None:
        """Enqueue the endpoints that may route to application `ref` when what they read
        of it (served name, deletion, ready backends; None once gone or invalid)
        changed since its last reconcile."""
        entry = self.cache.entry(ref)
        typed = entry.typed if entry else None
        view = None
        if isinstance(typed, resources.ArksApplication | resources.ArksDisaggregatedApplication):
            served = typed.served_model_name_or_default()
            view = (served, deleting(typed), tuple(self.platform.backends(ref)))
        before = self._routing_views.get(ref)
        if view == before and (view is not None or ref not in self._routing_views):
            return
        if view is None:
            self._routing_views.pop(ref, None)
        else:
            self._routing_views[ref] = view
        served_names = {v[0] for v in (before, view) if v is not None}
        for endpoint_ref in self.cache.refs(ENDPOINT, ref.namespace):
            endpoint = self.cache.get(endpoint_ref, resources.ArksEndpoint)
            if endpoint_ref.name in served_names or any(
                plans.application_of_service(r.name) == ref.name
                for r in (endpoint.spec.route_configs if endpoint else [])
            ):
                self.queue.add(endpoint_ref)

    # ------------------------------------------------------------------ endpoints
    def _applications(
        self, endpoint: resources.ArksEndpoint
    ) -> dict[str, publications.AppBackends]:
        """The applications of the endpoint's namespace that it may route to (serving its
        name, or named by a routeConfig), with their backends."""
        typed_apps: dict[
            str,
            tuple[ObjectRef, resources.ArksApplication | resources.ArksDisaggregatedApplication],
        ] = {}
        for kind in (DISAGGREGATED, APPLICATION):  # a standalone app wins a name clash
            for ref in self.cache.refs(kind, endpoint.namespace):
                entry = self.cache.entry(ref)
                typed = entry.typed if entry else None
                if isinstance(
                    typed, resources.ArksApplication | resources.ArksDisaggregatedApplication
                ):
                    typed_apps[ref.name] = (ref, typed)
        named = {plans.application_of_service(r.name) for r in endpoint.spec.route_configs}
        apps: dict[str, publications.AppBackends] = {}
        for name, (ref, typed) in typed_apps.items():
            served = typed.served_model_name_or_default()
            if served != endpoint.name and name not in named:
                continue  # computing its backends would cost, and it is never routed
            apps[name] = publications.AppBackends(
                name=name,
                served_model_name=served,
                backends=tuple(self.platform.backends(ref)),
                deleting=deleting(typed),
            )
        return apps

    async def _endpoint(self, endpoint: resources.ArksEndpoint, raw: Obj) -> None:
        key = subjects.namespaced_key(endpoint.namespace, endpoint.name)
        if deleting(endpoint):
            await self.routes.delete(key)
            await self.platform.delete_gateway_route(ref_of(endpoint))
            return
        static_urls = [
            self.platform.static_backend_url(endpoint.namespace, ref)
            for ref in endpoint.spec.route_configs
        ]
        routing = publications.endpoint_routing(endpoint, self._applications(endpoint), static_urls)
        await self.routes.put(key, routing.table)
        count = len(routing.table.backends)
        if count:
            who = ", ".join(routing.applications) or "static backends"
            ready = Cond(statuses.READY, "True", "Routed", f"Routing to {count} backend(s): {who}")
        else:
            ready = Cond(
                statuses.READY,
                "False",
                "NoBackends",
                f"No ready backend: no ready application in namespace {endpoint.namespace!r} "
                f"serves {endpoint.name!r} (servedModelName) and no static route resolves",
            )
        conds = [ready]
        gateway = await self.platform.ensure_gateway_route(endpoint)
        if gateway is not None:
            conds.append(
                Cond(
                    statuses.GATEWAY_ROUTED,
                    "True" if gateway.routed else "False",
                    gateway.reason,
                    gateway.message,
                )
            )
        if routing.unresolved:
            names = ", ".join(routing.unresolved)
            conds.append(
                Cond(
                    "StaticRoutesResolved",
                    "False",
                    "Unresolvable",
                    f"Static backends without a reachable address on the "
                    f"{self.platform.name} platform (give them a port): {names}",
                )
            )
        previous = endpoint.status.conditions if endpoint.status else []
        generation = endpoint.metadata.generation
        status = resources.ArksEndpointStatus(
            routes=routing.status_routes,
            observed_generation=generation,
            conditions=statuses.simple_conditions(
                previous, conds, generation=generation, now=utcnow()
            ),
        )
        await self.status.write(raw, dump_status(status))

    # ------------------------------------------------------------------ tokens & quotas
    async def _sync_tokens(self) -> None:
        tokens = [t for t in self.cache.of_kind(resources.ArksToken) if not deleting(t)]
        owners, losers = publications.token_owners(tokens)
        for digest, token in owners.items():
            await self.tokens.put(digest, publications.token_grant(token))
        await self.tokens.retain(owners)
        for token in tokens:
            await self._token_status(token, losers.get((token.namespace, token.name)))

    async def _token_status(
        self, token: resources.ArksToken, owner: resources.ArksToken | None
    ) -> None:
        entry = self.cache.entry(ref_of(token))
        if entry is None:
            return
        if owner is None:
            grants = len(token.spec.grants())
            ready = Cond(statuses.READY, "True", "Published", f"Granted on {grants} endpoint(s)")
        else:
            ready = Cond(
                statuses.READY,
                "False",
                "DuplicateToken",
                f"ArksToken {owner.namespace}/{owner.name} (older) uses the same token string; "
                "this one is not published: choose another spec.token",
            )
        missing: list[str] = []
        for endpoint, qos in token.spec.grants().items():
            if self.cache.entry(ObjectRef(ENDPOINT, token.namespace, endpoint)) is None:
                missing.append(f"ArksEndpoint {endpoint}")
            if qos.quota is not None and qos.quota.name:
                quota_ref = ObjectRef(QUOTA, token.namespace, qos.quota.name)
                if self.cache.entry(quota_ref) is None:
                    missing.append(f"ArksQuota {qos.quota.name}")
        if missing:
            refs = Cond(
                statuses.REFERENCES_RESOLVED,
                "False",
                "NotFound",
                "Not found in namespace "
                + token.namespace
                + ": "
                + ", ".join(sorted(set(missing))),
            )
        else:
            refs = Cond(statuses.REFERENCES_RESOLVED, "True", "Found", "Every reference exists")
        await self._write_conditions(token, entry.raw, [ready, refs])

    async def _quota(self, quota: resources.ArksQuota, raw: Obj) -> None:
        key = subjects.namespaced_key(quota.namespace, quota.name)
        if deleting(quota):
            await self.quotas.delete(key)
            return
        spec = publications.quota_spec(quota)
        await self.quotas.put(key, spec)
        parts = [f"{limit.type} {limit.value}" for limit in spec.limits]
        if quota.spec.budget is not None:
            parts.append(f"budget {quota.spec.budget.limit} {quota.spec.budget.currency}")
        message = "Published: " + ", ".join(parts) + f" ({spec.reset_period})"
        await self._write_conditions(
            quota, raw, [Cond(statuses.READY, "True", "Published", message)]
        )

    async def _write_conditions(
        self, resource: resources.AnyResource, raw: Obj, conds: Sequence[Cond]
    ) -> None:
        previous = resource.status.conditions if resource.status else []
        generation = resource.metadata.generation
        merged = statuses.simple_conditions(previous, conds, generation=generation, now=utcnow())
        status: dict[str, Any] = {
            "conditions": [
                c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in merged
            ]
        }
        if generation is not None:
            status["observedGeneration"] = generation
        await self.status.write(raw, status, owned=CONDITION_KEYS)

    # ------------------------------------------------------------------ garbage
    async def _collect_garbage(self) -> None:
        if not self.cache.synced:
            return
        existing = {ref for kind in APPLICATION_KINDS for ref in self.cache.refs(kind)}
        for ref in sorted(self.platform.workloads() - existing, key=lambda r: r.key):
            log.info(
                "removing the workload of %s %s/%s: the object is gone",
                ref.kind,
                ref.namespace,
                ref.name,
            )
            await self.platform.delete_workload(ref)
        await self.routes.retain(
            subjects.namespaced_key(r.namespace, r.name) for r in self.cache.refs(ENDPOINT)
        )
        await self.quotas.retain(
            subjects.namespaced_key(r.namespace, r.name) for r in self.cache.refs(QUOTA)
        )
