"""The seam between the platform-neutral reconcile core and where workloads run.

The core (`reconciling`) decides *what* should exist and what the status says; a
`Platform` makes workloads real and reports what it observes. Two implementations are
planned: `local` (processes on this machine, `arks_reconciler.local`) and `kubernetes`
(LeaderWorkerSet / RoleBasedGroup / Deployment, Service, PVC and download Job objects,
HTTPRoute; a later issue). Everything here is shaped so the Kubernetes one fits:

- `resources` is the API the objects come from: the local store, or a kubernetes-asyncio
  adapter that turns CRD watches into the same `StoreSnapshot` / `StoreChange` stream and
  writes through the status subresource.
- `ensure_*` calls are idempotent and level-triggered: they converge the platform towards
  a plan and return what they observe; they never wait for readiness. Platform changes
  (a process exits, a pod turns ready) come back through `notify`, which enqueues the
  owning object.
- Observations are plain values the core's pure status builders consume.
- `leadership` says when this reconciler may act (`leading`): only the leader watches,
  reconciles, publishes to KV and scrapes (see `leading`).

Failure modes: an `ensure_*` raises `RetryableError` for transient trouble (the core
requeues with backoff and keeps the last status), and reports permanent trouble (a
missing engine binary, an unsupported runtime) as a `Problem` in the observation, which
the core turns into a Failed phase and a condition naming what to fix.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from arks_common import resources as arks
from arks_common.store import Obj, ObjectRef, StatusMutation, StoreUpdate
from arks_reconciler import commands
from arks_reconciler.leading import Leadership
from arks_reconciler.plans import WorkloadPlan

Notify = Callable[[ObjectRef], None]
"""Ask the core to reconcile an object again (safe to call from any task, never blocks)."""


@dataclass(frozen=True)
class Problem:
    """Why something cannot run as specified; `reason` is CamelCase, `message` says the fix."""

    reason: str
    message: str


class ReplicaState(StrEnum):
    STARTING = "Starting"
    READY = "Ready"
    UNREADY = "Unready"
    BACKOFF = "BackOff"
    STOPPING = "Stopping"


@dataclass(frozen=True)
class ReplicaObservation:
    """One replica (a process, or a leader pod with its workers)."""

    name: str
    role: str
    state: ReplicaState
    url: str | None = None
    updated: bool = True
    """Runs the plan's current template."""
    restarts: int = 0
    message: str = ""
    """Why it is not ready (last exit, failing health check), '' when ready."""

    @property
    def ready(self) -> bool:
        return self.state is ReplicaState.READY


@dataclass(frozen=True)
class WorkloadObservation:
    replicas: tuple[ReplicaObservation, ...] = ()
    entry_role: str = "inference"
    problem: Problem | None = None
    """Set when the platform cannot run the plan at all."""

    def of_role(self, role: str) -> tuple[ReplicaObservation, ...]:
        return tuple(r for r in self.replicas if r.role == role)


class ModelState(StrEnum):
    LOADING = "Loading"
    READY = "Ready"
    FAILED = "Failed"
    STORAGE_FAILED = "StorageFailed"


@dataclass(frozen=True)
class ModelObservation:
    state: ModelState
    path: str | None = None
    message: str = ""
    storage: str = ""
    """What storage holds the model (a directory, a PVC name) for the StorageCreated message."""
    in_existing_storage: bool = False
    resolved_revision: str | None = None
    size_bytes: int | None = None
    retry_after: float | None = None
    """Reconcile again after this many seconds (a retryable failure, progress polling)."""


@dataclass(frozen=True)
class GatewayRoute:
    """What became of an endpoint's gateway route (its `GatewayRouted` condition)."""

    routed: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Backend:
    """A ready replica that may receive traffic."""

    replica: str
    url: str


class ResourceAccess(Protocol):
    """Where arks.ai/v1 objects come from and statuses go (ResourceStore's shape)."""

    def watch(
        self, kinds: Iterable[str] | None = None, *, stop: asyncio.Event | None = None
    ) -> AsyncIterator[StoreUpdate]: ...

    async def update_status(
        self, kind: str, namespace: str, name: str, mutate: StatusMutation
    ) -> Obj | None: ...

    async def set_finalizers(
        self, kind: str, namespace: str, name: str, finalizers: Iterable[str]
    ) -> Obj | None: ...


class Platform(Protocol):
    name: str

    @property
    def leadership(self) -> Leadership:
        """Whether this reconciler may act (see `leading`)."""

    @property
    def resources(self) -> ResourceAccess: ...

    async def start(self) -> None:
        """Recover state before the first reconcile (adopt what a previous run left)."""

    def record_event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        """Tell the platform's own event log of a status change of `obj` (Kubernetes
        Events; nothing on the local platform, whose NATS status events say it all)."""

    async def run(self, notify: Notify, stop: asyncio.Event) -> None:
        """Supervise workloads until `stop` is set; report changes through `notify`."""

    # -- applications ------------------------------------------------------------------
    def check(
        self, resource: arks.ArksApplication | arks.ArksDisaggregatedApplication
    ) -> list[Problem]:
        """What in an application this platform cannot run (its Precheck)."""

    def entry_role(self, resource: arks.ArksDisaggregatedApplication) -> str:
        """The role of a disaggregated application that receives traffic here."""

    async def ensure_workload(self, plan: WorkloadPlan) -> WorkloadObservation:
        """Converge the object's workload towards `plan` (scale, roll, start)."""

    def observe_workload(self, ref: ObjectRef) -> WorkloadObservation | None:
        """What runs for an object, without changing it (None: nothing)."""

    async def delete_workload(self, ref: ObjectRef) -> None:
        """Stop and remove everything of an object's workload; idempotent."""

    def workloads(self) -> set[ObjectRef]:
        """Objects that have a workload here (to remove those whose object is gone)."""

    def backends(self, ref: ObjectRef) -> list[Backend]:
        """Ready replicas of an object's entry role, where traffic may go."""

    def static_backend_url(self, namespace: str, ref: arks.HTTPBackendRef) -> str | None:
        """Base URL of a static `routeConfigs` backend, None if it cannot be reached."""

    # -- endpoints ---------------------------------------------------------------------
    async def ensure_gateway_route(self, endpoint: arks.ArksEndpoint) -> GatewayRoute | None:
        """Route the Gateway of `spec.gatewayRef` to the router (an HTTPRoute), or remove
        that route when the field is gone; None when the platform has no gateway routes."""

    async def delete_gateway_route(self, ref: ObjectRef) -> None:
        """Remove what `ensure_gateway_route` made for an endpoint that is gone."""

    # -- models ------------------------------------------------------------------------
    async def ensure_model(self, model: arks.ArksModel) -> ModelObservation:
        """Make the model's files available (storage, download); idempotent."""

    async def delete_model(self, ref: ObjectRef) -> None:
        """Forget or clean up what `ensure_model` created; idempotent."""


def argument_problems(
    resource: arks.ArksApplication | arks.ArksDisaggregatedApplication,
) -> list[Problem]:
    """`runtimeCommonArgs` that do not split into arguments as a shell would (both
    platforms pass them to a shell or split them the same way)."""
    if isinstance(resource, arks.ArksApplication):
        lists = [("spec.runtimeCommonArgs", resource.spec.runtime_common_args)]
    else:
        spec = resource.spec
        lists = [
            ("spec.prefill.runtimeCommonArgs", spec.prefill.runtime_common_args),
            ("spec.decode.runtimeCommonArgs", spec.decode.runtime_common_args),
        ]
    problems: list[Problem] = []
    for field, args in lists:
        try:
            commands.split_user_args(args)
        except ValueError as exc:
            problems.append(
                Problem(
                    "InvalidArguments",
                    f"{field}: cannot be split into arguments as a shell would ({exc}): "
                    "check the quotes",
                )
            )
    return problems
