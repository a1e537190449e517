"""The ReplicaSet controller (kube-controller-manager's `replicaset-controller`).

Keeps `spec.replicas` active pods (neither finished nor terminating) owned by each
ReplicaSet: missing ones are created from the template with generateName `<rs>-`
(`SuccessfulCreate`, "Created pod: x"), extra ones deleted in upstream's order — not yet
scheduled first, then Pending before Running, not ready before ready, lower
`controller.kubernetes.io/pod-deletion-cost`, ready for less time, more restarts, newest
(`SuccessfulDelete`). Failed or deleted pods are replaced on the next pass. Status:
replicas, fullyLabeledReplicas, readyReplicas, availableReplicas (ready for
minReadySeconds; the loop looks again when the next pod becomes available),
observedGeneration.

Not done: adopting orphan pods that match the selector and releasing owned pods that no
longer match (only pods with this ReplicaSet as controller are counted), slow-start
batches (all missing pods are created at once), the ReplicaFailure condition.
"""

from __future__ import annotations

from typing import Any

from arks_devcluster.controllers import pods as podstate
from arks_devcluster.controllers.loop import Controller
from arks_devcluster.controllers.util import int_or, omit_zero, parse_time
from arks_devcluster.errors import ApiError

Obj = dict[str, Any]
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_order(pod: Obj) -> tuple[Any, ...]:
    """Sort key: pods that sort first are deleted first (controller.ActivePodsWithRanks)."""
    ready = podstate.ready_condition(pod) or {}
    ready_since = parse_time(ready.get("lastTransitionTime")) if podstate.is_ready(pod) else None
    created = parse_time(pod["metadata"].get("creationTimestamp"))
    try:
        cost = int((pod["metadata"].get("annotations") or {}).get(DELETION_COST, "0"))
    except ValueError:
        cost = 0
    return (
        podstate.is_scheduled(pod),
        _PHASE_RANK.get(podstate.phase(pod), 2),
        podstate.is_ready(pod),
        cost,
        -(ready_since.timestamp() if ready_since else 0.0),
        -podstate.restarts(pod),
        -(created.timestamp() if created else 0.0),
        pod["metadata"]["name"],
    )


class ReplicaSetController(Controller):
    primary = ("apps", "replicasets")
    owns = (("", "pods"),)
    component = "replicaset-controller"

    def reconcile(self, namespace: str, name: str) -> float | None:
        rs = self.client.get("apps", "replicasets", namespace, name)
        if rs is None or rs["metadata"].get("deletionTimestamp"):
            return None
        spec = rs.get("spec") or {}
        wanted = int_or(spec.get("replicas"), 1)
        active = [p for p in self.client.owned_by(rs, "", "pods") if podstate.is_active(p)]
        if len(active) < wanted:
            for _ in range(wanted - len(active)):
                self._create(rs)
        elif len(active) > wanted:
            for pod in sorted(active, key=deletion_order)[: len(active) - wanted]:
                self.client.delete(pod)
                self.client.event(rs, "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}")
        return self._sync_status(rs)

    def _create(self, rs: Obj) -> None:
        template = (rs.get("spec") or {}).get("template") or {}
        try:
            pod = self.client.create(podstate.new_pod(template, rs))
        except ApiError as error:
            self.client.event(rs, "FailedCreate", f"Error creating: {error}", warning=True)
            raise
        self.client.event(rs, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")

    def _sync_status(self, rs: Obj) -> float | None:
        spec = rs.get("spec") or {}
        min_ready = int_or(spec.get("minReadySeconds"), 0)
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        active = [p for p in self.client.owned_by(rs, "", "pods") if podstate.is_active(p)]
        waits = [podstate.available_after(p, min_ready) for p in active]
        status = {
            **(rs.get("status") or {}),
            "replicas": len(active),
            "fullyLabeledReplicas": sum(
                1
                for p in active
                if template_labels.items() <= (p["metadata"].get("labels") or {}).items()
            ),
            "readyReplicas": sum(1 for p in active if podstate.is_ready(p)),
            "availableReplicas": sum(1 for w in waits if w == 0.0),
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        status = omit_zero(status, "fullyLabeledReplicas", "readyReplicas", "availableReplicas")
        if status != rs.get("status"):
            self.client.update({**rs, "status": status}, status=True)
        pending = [w for w in waits if w is not None and w > 0]
        return min(pending) + 0.05 if pending else None
