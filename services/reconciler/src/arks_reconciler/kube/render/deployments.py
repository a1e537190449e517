"""apps/v1 Deployments: engine roles of one-pod replicas (`deployment` driver) and the PD
router (`lws` and `deployment` drivers).

The selector (`arks.ai/application`, `arks.ai/role`) is immutable, so it never holds the
template hash. Rolling updates replace one replica at a time without surge
(`maxUnavailable: 1, maxSurge: 0`, as upstream's workloads): an engine replica usually
holds GPUs a surge pod could not get.
"""

from __future__ import annotations

from typing import Final

from arks_reconciler.kube import objects
from arks_reconciler.kube.objects import Obj
from arks_reconciler.kube.render import meta
from arks_reconciler.plans import RolePlan, WorkloadPlan

API_VERSION: Final = "apps/v1"


def selector(plan: WorkloadPlan, role: RolePlan) -> dict[str, str]:
    """The immutable pod selector of a role's Deployment."""
    return {objects.APPLICATION_LABEL: plan.ref.name, objects.ROLE_LABEL: role.role}


def deployment(plan: WorkloadPlan, role: RolePlan, name: str, template: Obj) -> Obj:
    """Deployment `name`: `role.replicas` pods of `template`."""
    out = meta.app_object(plan, API_VERSION, "Deployment", name)
    out["spec"] = {
        "replicas": role.replicas,
        "selector": {"matchLabels": selector(plan, role)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
        },
        "template": template,
    }
    return out
