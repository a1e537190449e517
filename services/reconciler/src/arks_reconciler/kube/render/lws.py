"""LeaderWorkerSet (leaderworkerset.x-k8s.io/v1) of one engine role.

`<app>` for an ArksApplication, `<app>-prefill` / `<app>-decode` for the disaggregated
kind: `replicas` groups of `size` pods, `startupPolicy: LeaderCreated`,
`restartPolicy: RecreateGroupOnPodRestart` (a failed pod restarts its whole group, as
multi-node engines need), the leader template and the worker template (for size 1 the
worker template alone: LWS uses it for the leader when no leader template is given).
The Volcano queue of `podGroupPolicy` is the LWS annotation LWS copies to its PodGroups.
"""

from __future__ import annotations

from typing import Final

from arks_reconciler.kube.objects import Obj
from arks_reconciler.kube.render import gang, meta
from arks_reconciler.kube.render.engines import EnginePods
from arks_reconciler.plans import WorkloadPlan

API_VERSION: Final = "leaderworkerset.x-k8s.io/v1"
KIND: Final = "LeaderWorkerSet"


def leader_worker_set(plan: WorkloadPlan, engine: EnginePods, name: str) -> Obj:
    """The LeaderWorkerSet `name` running `engine`'s pods."""
    out = meta.app_object(plan, API_VERSION, KIND, name)
    queue = gang.queue_annotations(plan.resource.spec.pod_group_policy)
    if queue:
        out["metadata"]["annotations"] = queue
    template: Obj = {"size": engine.role.template.size}
    template["restartPolicy"] = "RecreateGroupOnPodRestart"
    if engine.worker is not None:
        template["leaderTemplate"] = engine.leader
        template["workerTemplate"] = engine.worker
    else:
        template["workerTemplate"] = engine.leader
    out["spec"] = {
        "replicas": engine.role.replicas,
        "startupPolicy": "LeaderCreated",
        "leaderWorkerTemplate": template,
    }
    return out
