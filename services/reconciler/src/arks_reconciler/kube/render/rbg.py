"""RoleBasedGroup (workloads.x-k8s.io/v1alpha1) of an application: the `rbg` driver.

Why a RoleBasedGroup and not upstream's RoleBasedGroupSet: upstream renders an RBGS of
`spec.replicas` groups, each holding one 1-replica `inference` role. Arks renders one
RoleBasedGroup `<app>` whose roles carry the replica counts themselves:

- Status is one object's `roleStatuses` (replicas and ready replicas per role), so every
  replica counts. Upstream read only the first group of its set, so `status.replicas`
  never exceeded 1 and multi-replica applications were never routed (§6.5.3).
- A spec change rolls through the replicas: the role's LeaderWorkerSet (or Deployment)
  replaces one group at a time. A set updates every group's template at once, so all
  replicas restart together.
- Scaling changes one number (the role's `replicas`, hence the LWS's), it never creates
  or deletes whole groups, and the disaggregated kind keeps its upstream shape (upstream's
  set has `replicas: 1` there anyway): one group with roles `router`, `prefill`, `decode`.
- One level less (RBGS -> RBG -> LWS becomes RBG -> LWS), with shorter names: the role
  workloads are `<app>-<role>` (e.g. `<app>-inference`).

The cost: `podGroupPolicy` gangs the whole group (every replica of every role) where
upstream's set ganged each replica. Per-replica gangs are the `lws` driver with Volcano.

Engine roles are LeaderWorkerSet workloads (`leaderWorkerSet.size`); the role template
is the worker pod template and `patchLeaderTemplate` turns it into the leader's (see
`patching`), so workers are never labelled leader (§6.5.4). One-pod replicas use the
leader template alone. The router role is a Deployment workload.
`restartPolicy: RecreateRoleInstanceOnPodRestart` restarts a group when one of its pods
restarts, as upstream.
"""

from __future__ import annotations

from typing import Final

from arks_reconciler.kube.objects import Obj
from arks_reconciler.kube.render import gang, lws, meta, patching
from arks_reconciler.kube.render.engines import EnginePods
from arks_reconciler.plans import RolePlan, WorkloadPlan

API_VERSION: Final = "workloads.x-k8s.io/v1alpha1"
KIND: Final = "RoleBasedGroup"
RESTART: Final = "RecreateRoleInstanceOnPodRestart"


def _role(role: RolePlan, workload: Obj, template: Obj) -> Obj:
    return {
        "name": role.role,
        "replicas": role.replicas,
        "restartPolicy": RESTART,
        "workload": workload,
        "rolloutStrategy": {"type": "RollingUpdate"},
        "template": template,
    }


def engine_role(engine: EnginePods) -> Obj:
    """An engine role: a LeaderWorkerSet workload of `size` pods per replica."""
    workload = {"apiVersion": lws.API_VERSION, "kind": lws.KIND}
    group: Obj = {"size": engine.role.template.size}
    if engine.worker is None:
        out = _role(engine.role, workload, engine.leader)
    else:
        out = _role(engine.role, workload, engine.worker)
        group["patchLeaderTemplate"] = patching.template_patch(engine.worker, engine.leader)
    out["leaderWorkerSet"] = group
    return out


def deployment_role(role: RolePlan, template: Obj) -> Obj:
    """A role of one-pod replicas run by a Deployment (the PD router)."""
    return _role(role, {"apiVersion": "apps/v1", "kind": "Deployment"}, template)


def role_based_group(plan: WorkloadPlan, roles: list[Obj]) -> Obj:
    """RoleBasedGroup `<app>` with `roles` and the application's podGroupPolicy."""
    out = meta.app_object(plan, API_VERSION, KIND, plan.ref.name)
    spec: Obj = {}
    policy = gang.rbg_policy(plan.resource.spec.pod_group_policy)
    if policy:
        spec["podGroupPolicy"] = policy
    spec["roles"] = roles
    out["spec"] = spec
    return out
