"""Gang scheduling: `podGroupPolicy` rendered for each workload kind.

- RoleBasedGroup: the policy is copied to the RBG's own `spec.podGroupPolicy` (RBG creates
  the PodGroup of the whole group, for the scheduler-plugins coscheduling plugin or for
  Volcano).
- LeaderWorkerSet: LWS (>= v0.7) creates one Volcano PodGroup per replica group when its
  controller runs with `gangSchedulingManagement.schedulerProvider: volcano` (a
  cluster-wide switch of the LWS installation). Per the LWS documentation the pods must
  use `schedulerName: volcano`, and the queue is the LWS annotation
  `scheduling.volcano.sh/queue-name`; `priorityClassName` becomes the pods'
  `priorityClassName`, from which the PodGroup takes its priority. LWS has no
  scheduler-plugins integration and a pod template cannot name a per-group PodGroup, so
  `kubeScheduling` on the `lws` driver is refused by `driver_problems`.
- Deployment (one pod per replica): nothing to gang; Volcano still gets its scheduler
  name, queue annotation (on the pods) and priority class.

What the user set in `instanceSpec` (`schedulerName`, `priorityClassName`) wins.
"""

from __future__ import annotations

from typing import Final

from arks_common import resources
from arks_reconciler.kube.objects import Obj

VOLCANO_SCHEDULER: Final = "volcano"
VOLCANO_QUEUE: Final = "scheduling.volcano.sh/queue-name"


def _volcano(policy: resources.PodGroupPolicy | None) -> resources.VolcanoScheduling | None:
    return policy.volcano_scheduling if policy is not None else None


def pod_overrides(policy: resources.PodGroupPolicy | None) -> dict[str, str]:
    """Pod spec fields Volcano needs (applied only where instanceSpec leaves them unset)."""
    volcano = _volcano(policy)
    if volcano is None:
        return {}
    fields = {"schedulerName": VOLCANO_SCHEDULER}
    if volcano.priority_class_name:
        fields["priorityClassName"] = volcano.priority_class_name
    return fields


def queue_annotations(policy: resources.PodGroupPolicy | None) -> dict[str, str]:
    """The Volcano queue annotation (on an LWS, or on the pods of a Deployment)."""
    volcano = _volcano(policy)
    if volcano is None or not volcano.queue:
        return {}
    return {VOLCANO_QUEUE: volcano.queue}


def pod_annotations(policy: resources.PodGroupPolicy | None) -> dict[str, str]:
    """Annotations of pods that no LWS stands behind (the `deployment` driver)."""
    return queue_annotations(policy)


def rbg_policy(policy: resources.PodGroupPolicy | None) -> Obj | None:
    """The RoleBasedGroup's `podGroupPolicy` (the same schema as Arks')."""
    if policy is None:
        return None
    dumped = policy.model_dump(by_alias=True, exclude_none=True, mode="json")
    return dumped or None


def lws_problems(policy: resources.PodGroupPolicy | None) -> list[str]:
    """Why the policy cannot be honoured on a LeaderWorkerSet."""
    if policy is not None and policy.kube_scheduling is not None:
        return [
            "podGroupPolicy.kubeScheduling needs the rbg driver: LeaderWorkerSet gang-"
            "schedules only with Volcano (use podGroupPolicy.volcanoScheduling)"
        ]
    return []
