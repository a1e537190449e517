"""The PD router of a disaggregated application: sglang_router and its RBAC.

The router pods run upstream's command (spec §2.3): `python3 -m
sglang_router.launch_router --pd-disaggregation --service-discovery ...` with the
prefill and decode selectors (sorted `key=value` labels, leader pods only), the user's
`routerArgs`, then `--policy cache_aware` unless a `-policy` flag is given and the
Prometheus flags unless `prometheus-port` is given. `commandOverride` replaces the
command and exports the generated one as `ARKS_ROUTER_COMMAND`.

Service discovery lists pods, so the router runs as a ServiceAccount allowed to
get/list/watch pods: `instanceSpec.serviceAccountName` when set, else
`<app>-sglang-router`, rendered with its Role and RoleBinding and owned by the
application (upstream creates a namespace-wide `sglang-router` trio without owner, which
leaks: §6.5.15). The readiness probe (`/readiness`) targets the router's own port
(upstream hard-codes 8080 even when the port differs, §6.5.7).
"""

from __future__ import annotations

from typing import Final

from arks_common import resources
from arks_reconciler import commands, plans
from arks_reconciler.kube import objects
from arks_reconciler.kube.objects import Obj
from arks_reconciler.kube.render import gang, meta, pods
from arks_reconciler.plans import RolePlan, WorkloadPlan
from arks_reconciler.settings import KubeImages

ROUTER_CONTAINER: Final = "router"
RBAC_API: Final = "rbac.authorization.k8s.io/v1"
POD_VERBS: Final = ("get", "list", "watch")


def account_name(app: str) -> str:
    """The router's own ServiceAccount (and Role, RoleBinding)."""
    return f"{app}-sglang-router"


def _spec(plan: WorkloadPlan) -> resources.ArksDisaggregatedApplicationSpec:
    app = plan.resource
    assert isinstance(app, resources.ArksDisaggregatedApplication)
    return app.spec


def _selector(plan: WorkloadPlan, role: str) -> list[str]:
    labels = {
        objects.APPLICATION_LABEL: plan.ref.name,
        objects.PD_ROLE_LABEL: role,
        objects.MODEL_LABEL: plan.model.name,
        objects.WORKLOAD_ROLE_LABEL: objects.LEADER,
    }
    return [f"{key}={value}" for key, value in sorted(labels.items())]


def router_command(plan: WorkloadPlan, role: RolePlan) -> list[str]:
    """Upstream's generated router command (`/bin/bash -c <line>`)."""
    router = _spec(plan).router
    user = list(role.template.extra_args)
    joined = " ".join(user)
    words = [
        "python3 -m sglang_router.launch_router --pd-disaggregation --service-discovery",
        f"--service-discovery-port {commands.KUBE_ENGINE_PORT}",
        f"--host 0.0.0.0 --port {router.port}",
        f"--service-discovery-namespace {plan.ref.namespace}",
        "--prefill-selector",
        *_selector(plan, plans.PREFILL_ROLE),
        "--decode-selector",
        *_selector(plan, plans.DECODE_ROLE),
        *user,
    ]
    if "-policy" not in joined:
        words.append("--policy cache_aware")
    if "prometheus-port" not in joined:
        words.append(f"--prometheus-host 0.0.0.0 --prometheus-port {router.metric_port}")
    return ["/bin/bash", "-c", " ".join(words)]


def router_pod_template(plan: WorkloadPlan, role: RolePlan, images: KubeImages) -> Obj:
    """The router's pod template."""
    spec = _spec(plan)
    router = spec.router
    generated = router_command(plan, role)
    command, env_last = generated, []
    if router.command_override:
        command = list(router.command_override)
        env_last = [{"name": "ARKS_ROUTER_COMMAND", "value": generated[-1]}]
    instance = pods.instance_fields(router.instance_spec)
    readiness = {
        "httpGet": {"path": "/readiness", "port": "http"},
        "initialDelaySeconds": 30,
        "periodSeconds": 10,
        "timeoutSeconds": 3,
        "failureThreshold": 120,
    }
    main = pods.container(
        ROUTER_CONTAINER,
        role.template.image or images.sglang_router,
        command,
        instance,
        env_last=env_last,
        ports=[
            {"name": "http", "containerPort": router.port, "protocol": "TCP"},
            {"name": "metrics", "containerPort": router.metric_port, "protocol": "TCP"},
        ],
        default_probes={"readinessProbe": readiness},
        models_mount=False,
    )
    labels = {
        **objects.managed_labels(**meta.app_labels(plan)),
        objects.PD_ROLE_LABEL: plans.ROUTER_ROLE,
        objects.ROLE_LABEL: plans.ROUTER_ROLE,
        objects.TEMPLATE_HASH: role.template.hash,
    }
    policy = spec.pod_group_policy
    return pods.pod_template(
        instance,
        main,
        labels=labels,
        model_volume=None,
        pull_secrets=spec.runtime_image_pull_secrets,
        pod_overrides={
            "serviceAccountName": account_name(plan.ref.name),
            **gang.pod_overrides(policy),
        },
    )


def router_rbac(plan: WorkloadPlan) -> list[Obj]:
    """ServiceAccount, Role and RoleBinding `<app>-sglang-router`; none when the router
    instanceSpec names its own service account."""
    if _spec(plan).router.instance_spec.service_account_name:
        return []
    name = account_name(plan.ref.name)
    account = meta.app_object(plan, "v1", "ServiceAccount", name)
    role = meta.app_object(plan, RBAC_API, "Role", name)
    role["rules"] = [{"apiGroups": [""], "resources": ["pods"], "verbs": list(POD_VERBS)}]
    binding = meta.app_object(plan, RBAC_API, "RoleBinding", name)
    binding["roleRef"] = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}
    binding["subjects"] = [
        {"kind": "ServiceAccount", "name": name, "namespace": plan.ref.namespace}
    ]
    return [account, role, binding]
