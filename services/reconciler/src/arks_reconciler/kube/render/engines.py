"""The engine pods of one plan role: leader and worker pod templates.

Commands come from `commands.kube_leader_command` / `kube_worker_command` (upstream's
`/bin/bash -c` lines, spec §2.2) with the pod port `KUBE_ENGINE_PORT`; prefill and decode
roles add `--disaggregation-mode`. A disaggregated role's `leaderCommandOverride` /
`workerCommandOverride` replaces the command and exports the generated one as
`ARKS_LEADER_COMMAND` / `ARKS_WORKER_COMMAND`, as upstream.

Leader pods are labelled `arks.ai/work-load-role=leader`, worker pods `worker` (upstream's
RBG path labels workers as leaders, so its Service also selected workers: fixed). Only
the leader listens: it alone has the `http` port 8080 and the probes (the user's, else a
readiness probe on `/health` for the engines that serve it). Without LeaderWorkerSet (the
`deployment` driver, one pod per replica) the `$(LWS_*)` variables the commands expand
are given their single-node values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from arks_common import resources
from arks_reconciler import commands, plans
from arks_reconciler.kube import objects
from arks_reconciler.kube.objects import Obj
from arks_reconciler.kube.render import gang, meta, pods
from arks_reconciler.plans import RolePlan, WorkloadPlan
from arks_reconciler.settings import KubeImages

ENGINE_CONTAINER: Final = "engine"
HTTP_PORT: Final = {"name": "http", "containerPort": commands.KUBE_ENGINE_PORT, "protocol": "TCP"}
HEALTH_PROBE: Final = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10}
PROBED_RUNTIMES: Final = frozenset({"vllm", "sglang", "sim"})
"""Engines that answer `/health` on their HTTP port (dynamo's leader is a frontend)."""
WORKER_INDEX_LABEL: Final = "leaderworkerset.sigs.k8s.io/worker-index"
SINGLE_NODE_ENV: Final = (
    {"name": "LWS_LEADER_ADDRESS", "value": "127.0.0.1"},
    {"name": "LWS_GROUP_SIZE", "value": "1"},
    {"name": "LWS_WORKER_INDEX", "value": "0"},
)
PD_ROLES: Final = frozenset({plans.PREFILL_ROLE, plans.DECODE_ROLE})


@dataclass(frozen=True)
class EnginePods:
    """The pod templates of one engine role."""

    role: RolePlan
    leader: Obj
    worker: Obj | None
    """None for one-pod replicas (size 1)."""


def engine_args(role: RolePlan) -> commands.EngineArgs:
    """The engine arguments of a role's template, listening on the pod port."""
    t = role.template
    return commands.EngineArgs(
        model_path=t.model_path,
        served_model_name=t.served_model_name,
        port=commands.KUBE_ENGINE_PORT,
        tensor_parallel_size=t.tensor_parallel_size,
        extra_args=t.extra_args,
        disaggregation_mode=role.role if role.role in PD_ROLES else None,
    )


def role_instance(plan: WorkloadPlan, role: str) -> resources.InstanceSpec:
    """The instanceSpec of `role` of the plan's application."""
    app = plan.resource
    if isinstance(app, resources.ArksApplication):
        return app.spec.instance_spec
    if role == plans.ROUTER_ROLE:
        return app.spec.router.instance_spec
    workload: resources.DisaggregatedWorkload = getattr(app.spec, role)
    return workload.instance_spec


def _overrides(plan: WorkloadPlan, role: str) -> tuple[list[str] | None, list[str] | None]:
    app = plan.resource
    if isinstance(app, resources.ArksDisaggregatedApplication) and role in PD_ROLES:
        workload: resources.DisaggregatedWorkload = getattr(app.spec, role)
        return workload.leader_command_override, workload.worker_command_override
    return None, None


def pod_labels(plan: WorkloadPlan, role: RolePlan, workload_role: str) -> dict[str, str]:
    """Arks' labels of a role's pods (application, model, leader/worker, role, hash)."""
    labels = {
        **objects.managed_labels(**meta.app_labels(plan)),
        objects.WORKLOAD_ROLE_LABEL: workload_role,
        objects.ROLE_LABEL: role.role,
        objects.TEMPLATE_HASH: role.template.hash,
    }
    if isinstance(plan.resource, resources.ArksDisaggregatedApplication):
        labels[objects.PD_ROLE_LABEL] = role.role
    return labels


def image(role: RolePlan, images: KubeImages) -> str:
    """`runtimeImage`, else the platform's image of the runtime."""
    return role.template.image or images.runtime(role.template.runtime)


def _command(
    generated: list[str], override: list[str] | None, env_name: str
) -> tuple[list[str], list[Obj]]:
    if override:
        return list(override), [{"name": env_name, "value": generated[-1]}]
    return generated, []


def _template(
    plan: WorkloadPlan,
    role: RolePlan,
    images: KubeImages,
    *,
    leader: bool,
    single_node: bool,
) -> Obj:
    runtime = role.template.runtime
    args = engine_args(role)
    leader_override, worker_override = _overrides(plan, role.role)
    if leader:
        generated = commands.kube_leader_command(runtime, args)
        command, env_last = _command(generated, leader_override, "ARKS_LEADER_COMMAND")
    else:
        generated = commands.kube_worker_command(runtime, args)
        command, env_last = _command(generated, worker_override, "ARKS_WORKER_COMMAND")
    env_first: list[Obj] = []
    if single_node:
        if any("$(LWS_" in word for word in generated):
            env_first = [dict(e) for e in SINGLE_NODE_ENV]
    elif runtime == "sglang":
        path = f"metadata.labels['{WORKER_INDEX_LABEL}']"
        env_first = [{"name": "LWS_WORKER_INDEX", "valueFrom": {"fieldRef": {"fieldPath": path}}}]
    instance = pods.instance_fields(role_instance(plan, role.role))
    default_probes = {"readinessProbe": HEALTH_PROBE} if runtime in PROBED_RUNTIMES else {}
    main = pods.container(
        ENGINE_CONTAINER,
        image(role, images),
        command,
        instance,
        env_first=env_first,
        env_last=env_last,
        ports=[dict(HTTP_PORT)] if leader else [],
        probes=leader,
        default_probes=default_probes,
        models_mount=pods.models_volume(plan.model) is not None,
    )
    policy = plan.resource.spec.pod_group_policy
    return pods.pod_template(
        instance,
        main,
        labels=pod_labels(plan, role, objects.LEADER if leader else objects.WORKER),
        model_volume=pods.models_volume(plan.model),
        pull_secrets=plan.resource.spec.runtime_image_pull_secrets,
        annotations=gang.pod_annotations(policy) if single_node else None,
        pod_overrides=gang.pod_overrides(policy),
    )


def engine_pods(
    plan: WorkloadPlan, role: RolePlan, images: KubeImages, *, single_node: bool = False
) -> EnginePods:
    """Leader (and, for size > 1, worker) pod templates of an engine role."""
    leader = _template(plan, role, images, leader=True, single_node=single_node)
    worker = None
    if role.template.size > 1:
        worker = _template(plan, role, images, leader=False, single_node=single_node)
    return EnginePods(role, leader, worker)


def engine_roles(plan: WorkloadPlan) -> list[RolePlan]:
    """The plan's engine roles (every role but the PD router), in plan order."""
    return [r for r in plan.roles if r.role != plans.ROUTER_ROLE]
