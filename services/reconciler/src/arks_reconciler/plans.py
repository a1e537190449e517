"""Desired workloads, built purely from a resource's current spec and its model.

`application_plan` and `disaggregated_plan` are pure functions: the same spec (and model
path) always gives the same plan, so a replayed or stale event converges to the same
result. A plan names, per role, how many replicas should run and the template of each;
the template's hash tells a platform which running replicas are out of date (the
`updatedReplicas` count and rolling updates). `replicas` is not part of the template:
scaling never restarts a replica.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final

import orjson

from arks_common import resources
from arks_common.store import ObjectRef

INFERENCE_ROLE: Final = "inference"
PREFILL_ROLE: Final = "prefill"
DECODE_ROLE: Final = "decode"
ROUTER_ROLE: Final = "router"

APPLICATION_FINALIZER: Final = "application.arks.ai/controller"
MODEL_FINALIZER: Final = "model.arks.ai/controller"
SERVICE_PREFIX: Final = "arks-application-"
"""Upstream's Service name of an application: `arks-application-<app>`."""
SERVICE_PORT: Final = 8080


def service_name(application: str) -> str:
    return f"{SERVICE_PREFIX}{application}"


def application_of_service(name: str) -> str | None:
    return name[len(SERVICE_PREFIX) :] if name.startswith(SERVICE_PREFIX) else None


@dataclass(frozen=True)
class ReplicaTemplate:
    """Everything that defines one replica, except where it listens."""

    runtime: str
    model_path: str
    served_model_name: str
    tensor_parallel_size: int | None = None
    extra_args: tuple[str, ...] = ()
    size: int = 1
    image: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    """Plain `instanceSpec.env` values (valueFrom entries are platform business)."""
    role: str = INFERENCE_ROLE

    @property
    def hash(self) -> str:
        """A short, stable fingerprint: replicas with another hash are out of date."""
        blob = orjson.dumps(
            [
                self.runtime,
                self.model_path,
                self.served_model_name,
                self.tensor_parallel_size or 0,
                list(self.extra_args),
                self.size,
                self.image or "",
                [list(pair) for pair in self.env],
                self.role,
            ]
        )
        return hashlib.sha256(blob).hexdigest()[:12]


@dataclass(frozen=True)
class RolePlan:
    role: str
    replicas: int
    template: ReplicaTemplate


@dataclass(frozen=True)
class WorkloadPlan:
    """The desired workload of one application object."""

    ref: ObjectRef
    uid: str
    generation: int
    roles: tuple[RolePlan, ...]
    entry_role: str
    """The role that receives the endpoint's traffic."""
    resource: resources.ArksApplication | resources.ArksDisaggregatedApplication = field(
        compare=False
    )
    """The object itself, for platforms that render pass-through fields (pods)."""
    model: resources.ArksModel = field(compare=False)
    """The model it serves (storage to mount, cache leases to hold)."""

    def role(self, name: str) -> RolePlan | None:
        return next((r for r in self.roles if r.role == name), None)

    @property
    def desired_replicas(self) -> int:
        return sum(r.replicas for r in self.roles)


def model_path(model: resources.ArksModel) -> str:
    """Where engines find the model: what the platform reported, else the spec's path."""
    status = model.status
    if status is not None and status.path:
        return status.path
    return model.model_path()


def plain_env(instance: resources.InstanceSpec) -> tuple[tuple[str, str], ...]:
    """`instanceSpec.env` entries with a literal value, in order."""
    pairs: list[tuple[str, str]] = []
    for entry in instance.env or []:
        name, value = entry.get("name"), entry.get("value")
        if isinstance(name, str) and name and isinstance(value, str):
            pairs.append((name, value))
    return tuple(pairs)


def application_plan(app: resources.ArksApplication, model: resources.ArksModel) -> WorkloadPlan:
    spec = app.spec
    template = ReplicaTemplate(
        runtime=spec.runtime,
        model_path=model_path(model),
        served_model_name=spec.served_model_name_or_default(),
        tensor_parallel_size=spec.tensor_parallel_size or None,
        extra_args=tuple(spec.runtime_common_args),
        size=spec.size,
        image=spec.runtime_image,
        env=plain_env(spec.instance_spec),
    )
    return WorkloadPlan(
        ref=ObjectRef(app.kind, app.namespace, app.name),
        uid=app.metadata.uid or "",
        generation=app.metadata.generation or 0,
        roles=(RolePlan(INFERENCE_ROLE, max(spec.replicas, 0), template),),
        entry_role=INFERENCE_ROLE,
        resource=app,
        model=model,
    )


def disaggregated_plan(
    app: resources.ArksDisaggregatedApplication, model: resources.ArksModel, *, entry_role: str
) -> WorkloadPlan:
    """Prefill and decode roles (and the router role); `entry_role` is the platform's."""
    spec = app.spec
    path = model_path(model)
    name = spec.served_model_name_or_default()

    def role(role_name: str, workload: resources.DisaggregatedWorkload) -> RolePlan:
        template = ReplicaTemplate(
            runtime=spec.runtime,
            model_path=path,
            served_model_name=name,
            extra_args=tuple(workload.runtime_common_args),
            size=workload.size,
            image=spec.runtime_image,
            env=plain_env(workload.instance_spec),
            role=role_name,
        )
        return RolePlan(role_name, max(workload.replicas, 0), template)

    router = ReplicaTemplate(
        runtime=spec.runtime,
        model_path=path,
        served_model_name=name,
        extra_args=tuple(spec.router.router_args),
        image=spec.router_image,
        env=plain_env(spec.router.instance_spec),
        role=ROUTER_ROLE,
    )
    return WorkloadPlan(
        ref=ObjectRef(app.kind, app.namespace, app.name),
        uid=app.metadata.uid or "",
        generation=app.metadata.generation or 0,
        roles=(
            RolePlan(ROUTER_ROLE, max(spec.router.replicas, 0), router),
            role(PREFILL_ROLE, spec.prefill),
            role(DECODE_ROLE, spec.decode),
        ),
        entry_role=entry_role,
        resource=app,
        model=model,
    )
