"""The local platform: objects in the NATS KV store, replicas as processes on 127.0.0.1.

- Resources: `arks_common.store.ResourceStore` (KV `arks-resources`).
- ArksApplication: each replica is one supervised engine process (`supervising`) with a
  port of its own; `arks-engine-sim` for `runtime: sim`, `vllm serve` or SGLang's
  `launch_server` when installed (`engines`). One process serves one replica, so
  `size` > 1 (multi-node groups) is refused for real engines; the simulator ignores it.
  `runtime: dynamo` needs etcd, NATS and multi-node groups and is refused here.
- ArksDisaggregatedApplication with `runtime: sim`: prefill and decode replicas run as
  simulator processes and the endpoint routes to the decode replicas (the simulator
  serves whole requests and has no KV transfer, so there is no PD router process: the
  router role is not run). `runtime: sglang` needs sglang_router's Kubernetes service
  discovery and is refused here with a condition saying so.
- ArksModel: `storage.localPath`, or no `source`, is existing storage (Ready at once,
  path `<localPath>[/<subPath>]` or `<models_dir>/<subPath>` or
  `<models_dir>/models/<ns>/<name>`); a Hugging Face source goes through the model-cache
  service (`models`).
- Static `routeConfigs` with a port route to `http://127.0.0.1:<port>`.
- `instanceSpec` (`instance`): GPU requests become `CUDA_VISIBLE_DEVICES` assignments
  from the machine's GPUs (`gpus`), `env` `valueFrom.fieldRef` is resolved, probes
  replace the `/health` poll (`probing`); `runtimeImage`, `volumes`, `volumeMounts`,
  `initContainers`, unresolvable `valueFrom` and GPU requests larger than the machine
  are refused by `check` (Precheck False, a condition naming the field and the fix).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httpx

from arks_common import resources as arks
from arks_common.messaging import Bus
from arks_common.store import Obj, ObjectRef, ResourceStore
from arks_reconciler import plans
from arks_reconciler.leading import SoleLeader
from arks_reconciler.local import instance
from arks_reconciler.local.engines import Engines
from arks_reconciler.local.gpus import discover_with_nvidia_smi
from arks_reconciler.local.leasing import Leases, app_holder, model_holders
from arks_reconciler.local.models import ModelCacheClient
from arks_reconciler.local.registry import ReplicaRegistry
from arks_reconciler.local.supervising import Supervisor
from arks_reconciler.platform import (
    Backend,
    GatewayRoute,
    ModelObservation,
    ModelState,
    Notify,
    Problem,
    WorkloadObservation,
    argument_problems,
)
from arks_reconciler.settings import LocalSettings

log = logging.getLogger(__name__)

AnyApplication = arks.ArksApplication | arks.ArksDisaggregatedApplication


class LocalPlatform:
    name = "local"

    def __init__(
        self,
        settings: LocalSettings,
        bus: Bus,
        store: ResourceStore,
        client: httpx.AsyncClient,
        discover_gpus: Callable[[], list[str]] = discover_with_nvidia_smi,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.store = store
        self.engines = Engines(settings)
        self.supervisor = Supervisor(
            settings, ReplicaRegistry(bus), self.engines, client, discover_gpus
        )
        self.models = ModelCacheClient(bus)
        self.leases = Leases(settings.cache_root)
        self.leadership = SoleLeader()
        self._problems: dict[ObjectRef, Problem] = {}
        self._entry_roles: dict[ObjectRef, str] = {}

    @property
    def resources(self) -> ResourceStore:
        return self.store

    async def start(self) -> None:
        scrubbed = await self.store.scrub_tokens()  # plaintext stored by an older Arks
        if scrubbed:
            log.info("replaced the plaintext token of %d ArksToken(s) by its sha256", scrubbed)
        adopted = await self.supervisor.adopt()
        if adopted:
            log.info("adopted %d replica(s) from a previous run", len(adopted))

    def record_event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        """Nothing: `ResourceStatusChanged` on NATS is the local platform's event log."""

    async def run(self, notify: Notify, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.supervisor.run(notify, stop), name="local:supervisor")
            tg.create_task(self.models.run(notify, stop), name="local:model-events")

    # ------------------------------------------------------------------ applications
    def check(self, resource: AnyApplication) -> list[Problem]:
        problems = argument_problems(resource)
        image = instance.runtime_image_problem(resource)
        if image is not None:
            problems.append(image)
        _, instance_problems = self._local_specs(resource)
        problems += instance_problems
        if isinstance(resource, arks.ArksApplication):
            spec = resource.spec
            if spec.runtime == "dynamo":
                problems.append(
                    Problem(
                        "RuntimeNotSupport",
                        "runtime dynamo is not supported on the local platform (it needs etcd, "
                        "NATS and multi-node groups): use the kubernetes platform, or runtime "
                        "vllm, sglang or sim",
                    )
                )
            elif spec.size > 1 and spec.runtime != "sim":
                problems.append(
                    Problem(
                        "SizeNotSupported",
                        f"spec.size is {spec.size}, but the local platform runs one process per "
                        "replica: set size 1 (and tensorParallelSize for several GPUs), or use "
                        "the kubernetes platform for multi-node groups",
                    )
                )
        elif resource.spec.runtime != "sim":
            problems.append(
                Problem(
                    "RuntimeNotSupport",
                    f"runtime {resource.spec.runtime} for ArksDisaggregatedApplication is not "
                    "supported on the local platform: SGLang PD needs sglang_router's Kubernetes "
                    "service discovery; use runtime: sim here, or the kubernetes platform",
                )
            )
        return problems

    def _local_specs(
        self, resource: AnyApplication
    ) -> tuple[dict[str, instance.LocalSpec], list[Problem]]:
        specs: dict[str, instance.LocalSpec] = {}
        problems: list[Problem] = []
        share = instance.share_gpus(resource)
        inventory = self.supervisor.gpus.inventory
        for role, (where, spec) in instance.instance_specs(resource).items():
            local, found = instance.local_spec(spec, where, share=share)
            specs[role] = local
            problems += found
            if local.gpus > len(inventory):
                ids = f" ({', '.join(inventory)})" if inventory else ""
                problems.append(
                    Problem(
                        "InsufficientGPUs",
                        f"{where}.resources asks for {local.gpus} nvidia.com/gpu per replica, "
                        f"but this machine has {len(inventory)} GPU(s){ids}: lower the "
                        "request, set ARKS_LOCAL__GPUS, or use the kubernetes platform",
                    )
                )
        return specs, problems

    def entry_role(self, resource: arks.ArksDisaggregatedApplication) -> str:
        return plans.DECODE_ROLE

    async def ensure_workload(self, plan: plans.WorkloadPlan) -> WorkloadObservation:
        roles = [r for r in plan.roles if r.role != plans.ROUTER_ROLE]
        self._entry_roles[plan.ref] = plan.entry_role
        prefixes: dict[str, list[str]] = {}
        problem: Problem | None = None
        for role in roles:
            if role.replicas == 0:
                prefixes[role.role] = []
                continue
            found = self.engines.command(role.template.runtime)
            if isinstance(found, Problem):
                problem = found
                break
            prefixes[role.role] = found
        if problem is not None:
            self._problems[plan.ref] = problem
        else:
            self._problems.pop(plan.ref, None)
            await self._lease(plan)
            specs, _ = self._local_specs(plan.resource)
            await self.supervisor.ensure(plan, roles, prefixes, specs)
        observation = self.observe_workload(plan.ref)
        assert observation is not None or problem is None
        return observation or WorkloadObservation(entry_role=plan.entry_role)

    def observe_workload(self, ref: ObjectRef) -> WorkloadObservation | None:
        return self.supervisor.observe(
            ref,
            entry_role=self._entry_roles.get(ref, plans.INFERENCE_ROLE),
            problem=self._problems.get(ref),
        )

    async def _lease(self, plan: plans.WorkloadPlan) -> None:
        """Hold the application's lease on the cached snapshot it serves (if any)."""
        model = plan.model
        holder = app_holder(plan.ref.namespace, plan.ref.name)
        commit = model.status.resolved_revision if model.status else None
        if self.existing_path(model) is None and commit:
            await self.leases.hold(holder, model.spec.model, commit)
        else:
            await self.leases.release(holder)

    async def delete_workload(self, ref: ObjectRef) -> None:
        await self.supervisor.remove(ref)
        await self.leases.release(app_holder(ref.namespace, ref.name))
        self._problems.pop(ref, None)
        self._entry_roles.pop(ref, None)

    def workloads(self) -> set[ObjectRef]:
        return self.supervisor.owners()

    def backends(self, ref: ObjectRef) -> list[Backend]:
        role = self._entry_roles.get(ref)
        if role is None:
            role = plans.DECODE_ROLE if ref.kind == "ArksDisaggregatedApplication" else "inference"
        return self.supervisor.backends(ref, role)

    def static_backend_url(self, namespace: str, ref: arks.HTTPBackendRef) -> str | None:
        if ref.port is None:
            return None
        return f"http://{self.settings.host}:{ref.port}"

    # ------------------------------------------------------------------ endpoints
    async def ensure_gateway_route(self, endpoint: arks.ArksEndpoint) -> GatewayRoute | None:
        """None: clients reach the router directly; `gatewayRef` means nothing here."""
        return None

    async def delete_gateway_route(self, ref: ObjectRef) -> None:
        """Nothing was made."""

    # ------------------------------------------------------------------ models
    def existing_path(self, model: arks.ArksModel) -> str | None:
        storage = model.spec.storage
        if storage is not None and storage.local_path:
            return model.model_path()
        if model.in_existing_storage:
            return model.model_path(root=str(self.settings.models_root.absolute()))
        return None

    async def ensure_model(self, model: arks.ArksModel) -> ModelObservation:
        path = self.existing_path(model)
        if path is not None:
            return ModelObservation(
                state=ModelState.READY,
                path=path,
                storage=f"directory {path}",
                in_existing_storage=True,
            )
        return await self.models.ensure(model)

    async def delete_model(self, ref: ObjectRef) -> None:
        self.models.forget(ref)
        await self.leases.release(*model_holders(ref.namespace, ref.name))
