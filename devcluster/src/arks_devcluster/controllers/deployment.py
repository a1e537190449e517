"""The Deployment controller (kube-controller-manager's `deployment-controller`).

Each pod template gets its ReplicaSet `<deployment>-<pod-template-hash>` (the hash of the
template and `status.collisionCount`, see `util.template_hash`), with the
`pod-template-hash` label added to its selector, its template labels and its own labels,
the Deployment's annotations (but kubectl's last-applied one) and
`deployment.kubernetes.io/revision` (also set on the Deployment), `desired-replicas` and
`max-replicas`. A RollingUpdate grows the new ReplicaSet and shrinks the old ones within
maxSurge / maxUnavailable (see `rollout`), counting pods available after
minReadySeconds; Recreate scales the old ones to zero, waits for their pods to be gone
or finished, then creates the new one at full size. `paused` stops the rollout (scaling
still applies). Old ReplicaSets beyond revisionHistoryLimit are deleted once scaled down.
Events `ScalingReplicaSet` ("Scaled up replica set x from 0 to 3"). Status and conditions
as upstream; `kubectl rollout status` and `kubectl scale` work. The ReplicaSets' shape is
in `deployment_rs`, the rollout arithmetic in `rollout`, the status in `deployment_status`.

Not done: adopting ReplicaSets that match the selector but have no owner, proportional
scaling of several active ReplicaSets during a rollout (the rolling step converges
instead), rollbacks through `deprecated.deployment.rollback.to`, revision-history
annotations.
"""

from __future__ import annotations

import copy
from typing import Any

from arks_devcluster.controllers import deployment_rs, rollout
from arks_devcluster.controllers.deployment_status import DeploymentStatus
from arks_devcluster.controllers.loop import Controller, Key
from arks_devcluster.controllers.pods import controller_of, is_terminal
from arks_devcluster.controllers.util import without_label
from arks_devcluster.errors import ApiError
from arks_devcluster.store import Event

Obj = dict[str, Any]


class DeploymentController(Controller):
    primary = ("apps", "deployments")
    owns = (("apps", "replicasets"), ("", "pods"))
    component = "deployment-controller"

    def keys_for(self, event: Event) -> list[Key]:
        if event.rtype.plural != "pods":
            return list(super().keys_for(event))
        ref = controller_of(event.obj)  # a pod: its ReplicaSet's Deployment (Recreate waits)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return []
        namespace = event.obj["metadata"]["namespace"]
        rs = self.client.get("apps", "replicasets", namespace, ref["name"])
        owner = controller_of(rs) if rs else None
        return [(namespace, owner["name"])] if owner and owner.get("kind") == "Deployment" else []

    def reconcile(self, namespace: str, name: str) -> float | None:
        d = self.client.get("apps", "deployments", namespace, name)
        if d is None or d["metadata"].get("deletionTimestamp"):
            return None
        if not ((d.get("spec") or {}).get("selector") or {}):
            self.client.event(
                d,
                "SelectingAll",
                "This deployment will select all pods. A non-empty selector is required.",
                warning=True,
            )
            return None
        status = DeploymentStatus(self.client, d)
        spec = d["spec"]
        all_rs = self.client.owned_by(d, "apps", "replicasets")
        template = spec.get("template") or {}
        new_rs = next(
            (
                rs
                for rs in all_rs
                if without_label(rs["spec"]["template"], deployment_rs.HASH) == template
            ),
            None,
        )
        old = [rs for rs in all_rs if rs is not new_rs]
        if spec.get("paused"):
            if new_rs is not None:
                new_rs = self._sync_revision(d, new_rs, old)
            self._scale_paused(d, new_rs, all_rs)
            self._prune(d, old)
            return status.write(new_rs, all_rs, rollout_step=False)
        if not rollout.is_rolling(d):
            return self._recreate(d, status, new_rs, old)
        new_rs = self._new_rs(d, new_rs, old, status)
        all_rs = [*old, new_rs]
        target = rollout.new_rs_replicas(d, all_rs, new_rs)
        if rollout.replicas(new_rs) > rollout.replicas(d):
            target = rollout.replicas(d)
        if self._scale(d, new_rs, target):
            return status.write(new_rs, self._current(old, new_rs))
        for rs_name, size in rollout.old_scale_downs(d, old, new_rs).items():
            self._scale(d, next(rs for rs in old if rs["metadata"]["name"] == rs_name), size)
        all_rs = self._current(old, new_rs)
        if rollout.complete(d, status.calculate(new_rs, all_rs)):
            self._prune(
                d, [rs for rs in all_rs if rs["metadata"]["uid"] != new_rs["metadata"]["uid"]]
            )
        return status.write(new_rs, all_rs)

    def _scale_paused(self, d: Obj, new_rs: Obj | None, all_rs: list[Obj]) -> None:
        """sync(): scaling without a rollout. One active ReplicaSet (or else the newest)
        takes the full count; several active ones are left alone (no proportional
        scaling here)."""
        active = [rs for rs in all_rs if rollout.replicas(rs) > 0]
        if len(active) > 1:
            return
        newest = rollout.by_creation(all_rs)[-1] if all_rs else None
        chosen = active[0] if active else new_rs or newest
        if chosen is not None:
            self._scale(d, chosen, rollout.replicas(d))

    def _recreate(
        self, d: Obj, status: DeploymentStatus, new_rs: Obj | None, old: list[Obj]
    ) -> float | None:
        scaled = [self._scale(d, rs, 0) for rs in old if rollout.replicas(rs) > 0]
        if any(scaled) or self._old_pods_running(old):
            return status.write(new_rs, self._current(old, new_rs))
        new_rs = self._new_rs(d, new_rs, old, status)
        self._scale(d, new_rs, rollout.replicas(d))
        all_rs = self._current(old, new_rs)
        if rollout.complete(d, status.calculate(new_rs, all_rs)):
            self._prune(d, old)
        return status.write(new_rs, all_rs)

    def _old_pods_running(self, old: list[Obj]) -> bool:
        if sum(rollout.counted(rs, "replicas") for rs in old) > 0:
            return True
        uids = {rs["metadata"]["uid"] for rs in old}
        for pod in self.client.list("", "pods", old[0]["metadata"]["namespace"] if old else None):
            ref = controller_of(pod)
            if ref and ref.get("uid") in uids and not is_terminal(pod):
                return True
        return False

    def _current(self, old: list[Obj], new_rs: Obj | None) -> list[Obj]:
        found = []
        for rs in [*old, *([new_rs] if new_rs else [])]:
            meta = rs["metadata"]
            fresh = self.client.get("apps", "replicasets", meta["namespace"], meta["name"])
            if fresh is not None:
                found.append(fresh)
        return found

    # ------------------------------------------------------------------ ReplicaSets
    def _new_rs(self, d: Obj, new_rs: Obj | None, old: list[Obj], status: DeploymentStatus) -> Obj:
        """getNewReplicaSet: the new ReplicaSet, created when missing, revision synced."""
        if new_rs is None:
            new_rs = self._create(d, self._next_revision(old), status)
        return self._sync_revision(d, new_rs, old)

    @staticmethod
    def _next_revision(old: list[Obj]) -> int:
        return max((rollout.revision(rs) for rs in old), default=0) + 1

    def _sync_revision(self, d: Obj, new_rs: Obj, old: list[Obj]) -> Obj:
        """The new ReplicaSet's annotations and minReadySeconds from the Deployment, its
        revision above every old one's; the Deployment's revision annotation from it."""
        wanted = copy.deepcopy(new_rs)
        deployment_rs.annotate(d, wanted, max(self._next_revision(old), rollout.revision(new_rs)))
        wanted["spec"]["minReadySeconds"] = d["spec"].get("minReadySeconds", 0)
        if wanted != new_rs:
            new_rs = self.client.update(wanted)
        annotations = d["metadata"].get("annotations") or {}
        revision = str(rollout.revision(new_rs))
        if annotations.get(rollout.REVISION) != revision:
            d["metadata"]["annotations"] = {**annotations, rollout.REVISION: revision}
            d.update(self.client.update(d))
        return new_rs

    def _create(self, d: Obj, revision: int, status: DeploymentStatus) -> Obj:
        size = rollout.new_rs_replicas(d, self.client.owned_by(d, "apps", "replicasets"), None)
        rs = deployment_rs.new_replica_set(d, revision, status.collision_count(), size)
        try:
            created = self.client.create(rs)
        except ApiError as error:
            if error.code == 409:
                status.collided()  # a ReplicaSet of another template has the name
            raise
        if size > 0:
            self.client.event(
                d,
                "ScalingReplicaSet",
                f"Scaled up replica set {rs['metadata']['name']} from 0 to {size}",
            )
        status.created(rs["metadata"]["name"])
        return created

    def _scale(self, d: Obj, rs: Obj, size: int) -> bool:
        """Set a ReplicaSet's replicas (and replica annotations); True if the size moved."""
        before = rollout.replicas(rs)
        wanted = copy.deepcopy(rs)
        wanted["spec"]["replicas"] = size
        deployment_rs.replica_annotations(d, wanted)
        if wanted == rs:
            return False
        rs.update(self.client.update(wanted))
        if size != before:
            direction = "up" if size > before else "down"
            self.client.event(
                d,
                "ScalingReplicaSet",
                f"Scaled {direction} replica set {rs['metadata']['name']} from {before} to {size}",
            )
        return size != before

    def _prune(self, d: Obj, old: list[Obj]) -> None:
        for rs in rollout.prunable(d, old):
            self.client.delete(rs)
