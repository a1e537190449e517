"""Every object of an application's workload, per driver, in apply order.

- `lws`: one LeaderWorkerSet per engine role (`<app>`; `<app>-prefill`, `<app>-decode`).
- `rbg`: one RoleBasedGroup `<app>` holding every role (see `rbg` for why not a set).
- `deployment`: one Deployment per engine role, one pod per replica (size 1 only).

The disaggregated kind adds the router: a Deployment `<app>-router` (a `router` role of
the RoleBasedGroup with `rbg`), preceded by its ServiceAccount, Role and RoleBinding. The
Service `arks-application-<app>` comes last. What cannot run as asked (size > 1 on
Deployments, a multi-pod simulator, an API rule the pods would break) is said by
`driver_problems`, and then nothing is rendered: the platform reports it as Precheck
False instead of applying objects the API server or the engines would refuse.
"""

from __future__ import annotations

from arks_common import resources
from arks_reconciler import plans
from arks_reconciler.kube.objects import Obj
from arks_reconciler.kube.render import deployments, engines, gang, lws, rbg, router, services
from arks_reconciler.plans import RolePlan, WorkloadPlan
from arks_reconciler.settings import Driver, KubeImages


def resolve_driver(resource: object, default: Driver) -> Driver:
    """`spec.driver` of an ArksApplication, else the platform's `default`."""
    if isinstance(resource, resources.ArksApplication) and resource.spec.driver:
        return resource.spec.driver
    return default


def workload_name(plan: WorkloadPlan, role: RolePlan) -> str:
    """`<app>` for an ArksApplication's engine, `<app>-<role>` for the disaggregated roles."""
    if role.role == plans.INFERENCE_ROLE:
        return plan.ref.name
    return f"{plan.ref.name}-{role.role}"


def driver_problems(plan: WorkloadPlan, driver: Driver) -> list[str]:
    """Why `plan` cannot be rendered with `driver` (empty: it can)."""
    problems: list[str] = []
    for role in engines.engine_roles(plan):
        where = "" if role.role == plans.INFERENCE_ROLE else f"{role.role}."
        size = role.template.size
        if driver == "deployment" and size > 1:
            problems.append(
                f"{where}size: {size} pods per replica needs the lws or rbg driver; the "
                "deployment driver runs one pod per replica"
            )
        instance = engines.role_instance(plan, role.role)
        if instance.active_deadline_seconds is not None:
            problems.append(
                f"{where}instanceSpec.activeDeadlineSeconds: not allowed on the pods of a "
                "long-running workload (the API server refuses it)"
            )
    if driver == "lws":
        problems += gang.lws_problems(plan.resource.spec.pod_group_policy)
    app = plan.resource
    if (
        isinstance(app, resources.ArksDisaggregatedApplication)
        and app.spec.router.instance_spec.active_deadline_seconds is not None
    ):
        problems.append(
            "router.instanceSpec.activeDeadlineSeconds: not allowed on the router's "
            "Deployment pods (the API server refuses it)"
        )
    return problems


def _router_objects(plan: WorkloadPlan, images: KubeImages, driver: Driver) -> list[Obj]:
    role = plan.role(plans.ROUTER_ROLE)
    if role is None:
        return []
    out = router.router_rbac(plan)
    if driver != "rbg":
        template = router.router_pod_template(plan, role, images)
        name = workload_name(plan, role)
        out.append(deployments.deployment(plan, role, name, template))
    return out


def workload_objects(plan: WorkloadPlan, *, driver: Driver, images: KubeImages) -> list[Obj]:
    """Every object of the application's workload, in apply order (see the module doc);
    [] when `driver_problems` finds a problem."""
    if driver_problems(plan, driver):
        return []
    out = _router_objects(plan, images, driver)
    single = driver == "deployment"
    pods = [
        engines.engine_pods(plan, role, images, single_node=single)
        for role in engines.engine_roles(plan)
    ]
    if driver == "rbg":
        roles: list[Obj] = []
        router_role = plan.role(plans.ROUTER_ROLE)
        if router_role is not None:
            template = router.router_pod_template(plan, router_role, images)
            roles.append(rbg.deployment_role(router_role, template))
        roles += [rbg.engine_role(engine) for engine in pods]
        out.append(rbg.role_based_group(plan, roles))
    elif driver == "lws":
        out += [lws.leader_worker_set(plan, e, workload_name(plan, e.role)) for e in pods]
    else:
        out += [
            deployments.deployment(plan, e.role, workload_name(plan, e.role), e.leader)
            for e in pods
        ]
    out.append(services.service(plan))
    return out
