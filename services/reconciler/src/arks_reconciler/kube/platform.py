"""The Kubernetes platform: the core's `Platform` over a cluster's API.

- Resources: the arks.ai CRDs through informers (`custom_objects`); statuses through the
  status subresource.
- Owned objects (`kinds.OWNED`) are watched with `app.kubernetes.io/managed-by=arks`,
  pods with an `arks.ai/application` label (ours and upstream Arks'); every change
  enqueues the arks.ai object that owns it. The first snapshot of resources waits for
  these caches, so the first reconcile already sees what runs.
- ArksApplication / ArksDisaggregatedApplication: `render.workload_objects` applied by
  server-side apply (`applying`); the driver is `spec.driver`, else the kind of workload
  the application already has (an LWS left by upstream Arks is adopted), else the
  setting. Objects of the application no longer rendered (another driver) are deleted.
  Observations come from the pod cache (`observing`).
- ArksModel: `model_storage`.
- ArksEndpoint with `gatewayRef`: an HTTPRoute to the router Service (`ensure_routes`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable

from arks_common import resources as arks
from arks_common.kubeapi import KubeApi
from arks_common.store import ObjectRef
from arks_reconciler import plans
from arks_reconciler.kube import kinds, observing, render
from arks_reconciler.kube.applying import Applier
from arks_reconciler.kube.custom_objects import CustomObjects
from arks_reconciler.kube.informers import Informer
from arks_reconciler.kube.kinds import KindInfo
from arks_reconciler.kube.model_storage import ModelStorage
from arks_reconciler.kube.objects import (
    APPLICATION_LABEL,
    ARKS_API_VERSION,
    MANAGED_SELECTOR,
    PD_ROLE_LABEL,
    TEMPLATE_HASH,
    Obj,
    controller_of,
)
from arks_reconciler.kube.recording import EventRecorder
from arks_reconciler.leading import Leadership
from arks_reconciler.platform import (
    Backend,
    GatewayRoute,
    ModelObservation,
    Notify,
    Problem,
    ReplicaState,
    WorkloadObservation,
    argument_problems,
)
from arks_reconciler.settings import Driver, KubernetesPlatformSettings

log = logging.getLogger(__name__)

AnyApplication = arks.ArksApplication | arks.ArksDisaggregatedApplication
APP_KINDS = ("ArksApplication", "ArksDisaggregatedApplication")
WORKLOAD_KINDS = (
    kinds.LWS,
    kinds.RBG,
    kinds.RBGS,
    kinds.DEPLOYMENT,
    kinds.SERVICE,
    kinds.SERVICE_ACCOUNT,
    kinds.ROLE,
    kinds.ROLE_BINDING,
)
"""Kinds an application owns (deleted with it, or when no longer rendered)."""
DRIVER_OF = {kinds.LWS: "lws", kinds.RBG: "rbg", kinds.DEPLOYMENT: "deployment"}


def _owner_ref(obj: Obj) -> ObjectRef | None:
    ref = controller_of(obj)
    if ref is None or ref.get("apiVersion") != ARKS_API_VERSION:
        return None
    namespace = (obj.get("metadata") or {}).get("namespace") or ""
    return ObjectRef(str(ref.get("kind")), namespace, str(ref.get("name")))


class KubernetesPlatform:
    name = "kubernetes"

    def __init__(
        self,
        settings: KubernetesPlatformSettings,
        kube: KubeApi,
        *,
        leadership: Leadership,
        recorder: EventRecorder | None = None,
    ) -> None:
        self.settings = settings
        self.kube = kube
        self._leadership = leadership
        self.recorder = recorder
        self._notify: Notify | None = None
        common = {
            "namespace": settings.namespace,
            "page_size": settings.page_size,
            "watch_timeout": settings.watch_timeout,
            "on_event": self._on_owned,
        }
        self.informers: dict[KindInfo, Informer] = {
            info: Informer(
                kube,
                info,
                selector=(
                    APPLICATION_LABEL if info in kinds.LABELLED_BY_APPLICATION else MANAGED_SELECTOR
                ),
                index_label=APPLICATION_LABEL if info == kinds.POD else None,
                **common,  # type: ignore[arg-type]
            )
            for info in kinds.OWNED
        }
        self.custom_objects = CustomObjects(
            kube,
            namespace=settings.namespace,
            page_size=settings.page_size,
            watch_timeout=settings.watch_timeout,
            after=[i.synced for i in self.informers.values()],
        )
        self.applier = Applier(kube, self.cached)
        self.models = ModelStorage(settings, kube, self.applier, self.informers[kinds.JOB])
        self._problems: dict[ObjectRef, Problem] = {}
        self._hashes: dict[ObjectRef, dict[str, str]] = {}
        self._entry_roles: dict[ObjectRef, str] = {}

    @property
    def leadership(self) -> Leadership:
        return self._leadership

    @property
    def resources(self) -> CustomObjects:
        return self.custom_objects

    def cached(self, info: KindInfo, namespace: str, name: str) -> Obj | None:
        informer = self.informers.get(info)
        if informer is not None:
            return informer.get(namespace, name)
        if info.group == arks.GROUP:
            return self.custom_objects.cached(info.kind, namespace, name)
        return None

    # ------------------------------------------------------------------ running
    async def start(self) -> None:
        """Nothing to recover: the caches are the cluster's state."""

    async def run(self, notify: Notify, stop: asyncio.Event) -> None:
        self._notify = notify
        async with asyncio.TaskGroup() as tg:
            if self.recorder is not None:
                tg.create_task(self.recorder.run(stop), name="kube:events")
            for info, informer in self.informers.items():
                tg.create_task(informer.run(stop), name=f"kube:{info.plural}")

    def record_event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event about `obj` (a phase change, a failure)."""
        if self.recorder is not None:
            self.recorder.record(
                obj, "Warning" if type_ == "Warning" else "Normal", reason, message
            )

    def _on_owned(self, _type: str, obj: Obj) -> None:
        self.applier.written.seen(obj, deleted=_type == "DELETED")
        if self._notify is None:
            return
        ref = _owner_ref(obj)
        if ref is None and obj.get("kind") == "Pod":
            labels = (obj.get("metadata") or {}).get("labels") or {}
            app = labels.get(APPLICATION_LABEL)
            if app:
                kind = APP_KINDS[1] if PD_ROLE_LABEL in labels else APP_KINDS[0]
                ref = ObjectRef(kind, obj["metadata"].get("namespace") or "", app)
        if ref is not None:
            self._notify(ref)

    # ------------------------------------------------------------------ applications
    def check(self, resource: AnyApplication) -> list[Problem]:
        problems = argument_problems(resource)
        problems += [Problem("NameTooLong", m) for m in render.name_problems(resource)]
        if isinstance(
            resource, arks.ArksDisaggregatedApplication
        ) and resource.spec.runtime not in (
            "sglang",
            "sim",
        ):
            problems.append(
                Problem(
                    "RuntimeNotSupport",
                    f"runtime {resource.spec.runtime} for ArksDisaggregatedApplication is not "
                    "supported: use sglang (or sim)",
                )
            )
        driver = self._driver_for(resource)
        informer = self.informers[kinds.DRIVERS[driver]]
        if informer.synced.is_set() and not informer.available:
            info = kinds.DRIVERS[driver]
            problems.append(
                Problem(
                    "DriverNotInstalled",
                    f"driver {driver}: the cluster does not serve {info.plural}.{info.group} "
                    f"(install its CRD and controller), or choose another spec.driver",
                )
            )
        return problems

    def entry_role(self, resource: arks.ArksDisaggregatedApplication) -> str:
        """sglang_router in front of SGLang; the simulator's decode role serves directly."""
        return plans.ROUTER_ROLE if resource.spec.runtime == "sglang" else plans.DECODE_ROLE

    def _owned(self, ref: ObjectRef, infos: Iterable[KindInfo] = WORKLOAD_KINDS) -> list[Obj]:
        out = []
        for info in infos:
            for obj in self.informers[info].controlled_by(ref.kind, ref.namespace, ref.name):
                if _owner_ref(obj) == ref:  # an arks.ai controller, not another group's
                    out.append(obj)
        return out

    def _driver_for(self, resource: AnyApplication) -> Driver:
        if isinstance(resource, arks.ArksApplication) and resource.spec.driver:
            return resource.spec.driver
        ref = ObjectRef(resource.kind, resource.namespace, resource.name)
        for info, driver in DRIVER_OF.items():
            if info == kinds.DEPLOYMENT and ref.kind != APP_KINDS[0]:
                continue  # a disaggregated application's router is a Deployment anyway
            if self._owned(ref, [info]):
                return driver  # type: ignore[return-value]
        return self.settings.driver

    async def ensure_workload(self, plan: plans.WorkloadPlan) -> WorkloadObservation:
        ref = plan.ref
        if plan.entry_role != plans.ROUTER_ROLE:
            plan = dataclasses.replace(
                plan, roles=tuple(r for r in plan.roles if r.role != plans.ROUTER_ROLE)
            )
        self._entry_roles[ref] = plan.entry_role
        self._hashes[ref] = {r.role: r.template.hash for r in plan.roles}
        driver = self._driver_for(plan.resource)
        problems = render.driver_problems(plan, driver)
        if problems:
            self._problems[ref] = Problem("DriverNotSupported", "; ".join(problems))
            return self._observe(ref)
        self._problems.pop(ref, None)
        wanted = render.workload_objects(plan, driver=driver, images=self.settings.images)
        for obj in wanted:
            await self.applier.apply(obj)
        keep = {(o["kind"], o["metadata"]["name"]) for o in wanted}
        for obj in self._owned(ref):
            name = obj["metadata"]["name"]
            if (obj["kind"], name) in keep:
                continue
            if obj["kind"] == kinds.RBGS.kind:
                await self._replace_upstream(plan, obj)
                continue
            log.info("deleting %s %s: no longer part of %s", obj["kind"], name, ref)
            await self.applier.delete(kinds.kind_of(obj), ref.namespace, name)
        return self._observe(ref)

    async def _replace_upstream(self, plan: plans.WorkloadPlan, rbgs: Obj) -> None:
        """Upstream Arks' RoleBasedGroupSet of the application keeps serving (its pods
        carry our labels: they are observed and routed) until the workload we render has
        every replica Ready; then it is deleted, and an Event says so."""
        ref = plan.ref
        ours = [
            p for p in self._pods(ref) if TEMPLATE_HASH in ((p["metadata"].get("labels")) or {})
        ]
        ready = sum(
            1
            for r in observing.replicas(ours, self._hashes.get(ref, {}))
            if r.role == plan.entry_role and r.state is ReplicaState.READY and r.updated
        )
        wanted = sum(r.replicas for r in plan.roles if r.role == plan.entry_role)
        if ready < max(wanted, 1):
            return
        name = rbgs["metadata"]["name"]
        log.info("deleting upstream's RoleBasedGroupSet %s of %s: ours serves", name, ref)
        await self.applier.delete(kinds.RBGS, ref.namespace, name)
        app = self.custom_objects.cached(ref.kind, ref.namespace, ref.name)
        if app is not None:
            self.record_event(
                app,
                "Normal",
                "Adopted",
                f"{ready} replica(s) of the rendered workload are Ready: deleted upstream "
                f"Arks' RoleBasedGroupSet {name}",
            )

    def _pods(self, ref: ObjectRef) -> list[Obj]:
        pods = self.informers[kinds.POD].select(ref.namespace, **{APPLICATION_LABEL: ref.name})
        disaggregated = ref.kind == APP_KINDS[1]
        return [
            p
            for p in pods
            if (PD_ROLE_LABEL in ((p["metadata"].get("labels")) or {})) == disaggregated
        ]

    def _observe(self, ref: ObjectRef) -> WorkloadObservation:
        entry = self._entry_roles.get(ref) or (
            plans.DECODE_ROLE if ref.kind == APP_KINDS[1] else plans.INFERENCE_ROLE
        )
        replicas = observing.replicas(self._pods(ref), self._hashes.get(ref, {}))
        return WorkloadObservation(
            replicas=replicas, entry_role=entry, problem=self._problems.get(ref)
        )

    def observe_workload(self, ref: ObjectRef) -> WorkloadObservation | None:
        if ref not in self._problems and not self._owned(ref) and not self._pods(ref):
            return None
        return self._observe(ref)

    async def delete_workload(self, ref: ObjectRef) -> None:
        for obj in self._owned(ref):
            await self.applier.delete(kinds.kind_of(obj), ref.namespace, obj["metadata"]["name"])
        self._problems.pop(ref, None)
        self._hashes.pop(ref, None)
        self._entry_roles.pop(ref, None)

    def workloads(self) -> set[ObjectRef]:
        found = set()
        for info in WORKLOAD_KINDS:
            for obj in self.informers[info].objects.values():
                ref = _owner_ref(obj)
                if ref is not None and ref.kind in APP_KINDS:
                    found.add(ref)
        return found

    def backends(self, ref: ObjectRef) -> list[Backend]:
        observation = self._observe(ref)
        return [
            Backend(r.name, r.url)
            for r in observation.of_role(observation.entry_role)
            if r.ready and r.url
        ]

    def static_backend_url(self, namespace: str, ref: arks.HTTPBackendRef) -> str | None:
        if ref.port is None or (ref.kind or "Service") != "Service" or ref.group:
            return None
        return f"http://{ref.name}.{ref.namespace or namespace}.svc:{ref.port}"

    # ------------------------------------------------------------------ endpoints
    def _router_service(self) -> tuple[str, str, int]:
        where, port = self.settings.router_service.rsplit(":", 1)
        namespace, name = where.split("/", 1)
        return namespace, name, int(port)

    async def ensure_gateway_route(self, endpoint: arks.ArksEndpoint) -> GatewayRoute | None:
        ref = ObjectRef(endpoint.kind, endpoint.namespace, endpoint.name)
        router = self._router_service()
        wanted = render.http_route(endpoint, router_service=router, uid=endpoint.metadata.uid or "")
        if not wanted:
            await self.delete_gateway_route(ref)
            return None
        route_info = self.informers[kinds.HTTP_ROUTE]
        if route_info.synced.is_set() and not route_info.available:
            return GatewayRoute(
                False,
                "GatewayAPINotInstalled",
                "spec.gatewayRef is set but the cluster does not serve "
                "httproutes.gateway.networking.k8s.io: install the Gateway API CRDs",
            )
        for obj in wanted:
            await self.applier.apply(obj)
        namespace, name, port = router
        return GatewayRoute(
            True,
            "Routed",
            f"HTTPRoute {endpoint.name} sends requests for model {endpoint.name!r} to "
            f"Service {namespace}/{name}:{port}",
        )

    async def delete_gateway_route(self, ref: ObjectRef) -> None:
        for obj in self._owned(ref, [kinds.HTTP_ROUTE]):
            await self.applier.delete(kinds.HTTP_ROUTE, ref.namespace, obj["metadata"]["name"])
        namespace, _, _ = self._router_service()
        grant = self.informers[kinds.REFERENCE_GRANT].get(
            namespace, render.grant_name_of(ref.namespace, ref.name)
        )
        if grant is not None:
            await self.applier.delete(kinds.REFERENCE_GRANT, namespace, grant["metadata"]["name"])

    # ------------------------------------------------------------------ models
    async def ensure_model(self, model: arks.ArksModel) -> ModelObservation:
        return await self.models.ensure(model)

    async def delete_model(self, ref: ObjectRef) -> None:
        for obj in self._owned(ref, [kinds.JOB]):
            await self.applier.delete(kinds.JOB, ref.namespace, obj["metadata"]["name"])
