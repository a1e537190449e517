"""The StatefulSet controller (kube-controller-manager's `statefulset-controller`).

Pods `<set>-<ordinal>` for ordinals `[ordinals.start, start + replicas)` (see
`statefulset_pods` for names, labels and claims), each claim of volumeClaimTemplates
created before its pod. podManagementPolicy `OrderedReady` (default) creates one pod at a
time and waits for it to be Running and Ready (and available after minReadySeconds)
before the next, and removes surplus pods from the highest ordinal, one at a time;
`Parallel` does both at once. Failed or finished pods are deleted and recreated. A
`RollingUpdate` (default) deletes, from the highest ordinal down to `partition`, one pod
whose `controller-revision-hash` is not the update revision, waits for its replacement to
be healthy, then the next; `OnDelete` waits for someone else to delete. Events
`SuccessfulCreate` / `SuccessfulDelete` with upstream's messages. Status: replicas,
readyReplicas, currentReplicas, updatedReplicas, availableReplicas, currentRevision
(becomes the update revision once every pod runs it and is ready), updateRevision,
observedGeneration, collisionCount.

Pods of an earlier revision recreated below the partition use that revision's template
when this controller saw it (kept in memory: there are no ControllerRevision objects
here), else the current one. Claims are kept on scale-down unless
`persistentVolumeClaimRetentionPolicy.whenScaled` is `Delete`. Pods created for a
LeaderWorkerSet go through the LWS pod webhook's defaulting (`lws_pods.default_pod`), as
they would in a cluster running LWS.

Not done: adopting orphans, maxUnavailable (alpha upstream), updating the identity of
existing pods in place.
"""

from __future__ import annotations

from typing import Any

from arks_devcluster.controllers import pods as podstate
from arks_devcluster.controllers import statefulset_pods as sp
from arks_devcluster.controllers.loop import Controller
from arks_devcluster.controllers.lws_pods import default_pod
from arks_devcluster.controllers.util import int_or, omit_zero

Obj = dict[str, Any]


class StatefulSetController(Controller):
    primary = ("apps", "statefulsets")
    owns = (("", "pods"),)
    component = "statefulset-controller"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._templates: dict[str, Obj] = {}  # "<uid>/<revision>" -> pod template

    def reconcile(self, namespace: str, name: str) -> float | None:
        sts = self.client.get("apps", "statefulsets", namespace, name)
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return None
        spec = sts.get("spec") or {}
        update = sp.revision_name(sts)
        current = (sts.get("status") or {}).get("currentRevision") or update
        self._templates[f"{sts['metadata']['uid']}/{update}"] = spec.get("template") or {}
        self._sync_pods(sts, update, current)
        return self._sync_status(sts, update, current)

    def _sync_pods(self, sts: Obj, update: str, current: str) -> None:
        spec = sts.get("spec") or {}
        first, count = sp.start(sts), int_or(spec.get("replicas"), 1)
        monotonic = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        min_ready = int_or(spec.get("minReadySeconds"), 0)
        by_ordinal: dict[int, Obj] = {}
        for owned in self.client.owned_by(sts, "", "pods"):
            number = sp.ordinal_of(sts, owned)
            if number is not None:
                by_ordinal[number] = owned
        healthy = True
        for ordinal in range(first, first + count):
            pod = by_ordinal.get(ordinal)
            if pod is not None and podstate.is_terminal(pod) and not podstate.is_terminating(pod):
                self._delete(sts, pod)
                pod = None
                if monotonic:
                    return
            if pod is None:
                self._create(sts, ordinal, update, current)
                healthy = False
                if monotonic:
                    return
                continue
            self._ensure_claims(sts, ordinal)
            if podstate.is_terminating(pod) or not (
                podstate.is_running_and_ready(pod) and podstate.is_available(pod, min_ready)
            ):
                healthy = False
                if monotonic:
                    return
        condemned = sorted((o for o in by_ordinal if not first <= o < first + count), reverse=True)
        unhealthy = [o for o in condemned if not podstate.is_running_and_ready(by_ordinal[o])]
        for ordinal in condemned:
            pod = by_ordinal[ordinal]
            if podstate.is_terminating(pod):
                if monotonic:
                    return
                continue
            # monotonic: an unhealthy pod goes only when it is the first unhealthy one
            if monotonic and (not healthy or (ordinal in unhealthy and ordinal != unhealthy[0])):
                return
            self._delete(sts, pod)
            self._release_claims(sts, ordinal)
            if monotonic:
                return
        strategy = spec.get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return
        partition = int_or((strategy.get("rollingUpdate") or {}).get("partition"), 0)
        for ordinal in range(first + count - 1, first + partition - 1, -1):
            pod = by_ordinal.get(ordinal)
            if pod is None:
                return
            if sp.revision_of(pod) != update and not podstate.is_terminating(pod):
                self._delete(sts, pod)
                return
            if not podstate.is_running_and_ready(pod) or podstate.is_terminating(pod):
                return

    def _create(self, sts: Obj, ordinal: int, update: str, current: str) -> None:
        spec = sts.get("spec") or {}
        strategy = spec.get("updateStrategy") or {}
        partition = int_or((strategy.get("rollingUpdate") or {}).get("partition"), 0)
        revision = update
        if (
            strategy.get("type", "RollingUpdate") == "RollingUpdate"
            and ordinal - sp.start(sts) < partition
        ):
            revision = current
        template = self._templates.get(f"{sts['metadata']['uid']}/{revision}")
        if template is None:
            revision, template = update, spec.get("template") or {}
        self._ensure_claims(sts, ordinal)
        pod = default_pod(sp.new_set_pod(sts, ordinal, revision, template))
        self.client.create(pod)
        what = f"Pod {pod['metadata']['name']} in StatefulSet {sts['metadata']['name']}"
        self.client.event(sts, "SuccessfulCreate", f"create {what} successful")

    def _ensure_claims(self, sts: Obj, ordinal: int) -> None:
        for template in (sts.get("spec") or {}).get("volumeClaimTemplates") or []:
            name = sp.claim_name(template, sts, ordinal)
            if self.client.get("", "persistentvolumeclaims", sts["metadata"]["namespace"], name):
                continue
            self.client.create(sp.new_claim(sts, template, ordinal))
            self.client.event(
                sts,
                "SuccessfulCreate",
                f"create Claim {name} Pod {sts['metadata']['name']}-{ordinal} in StatefulSet "
                f"{sts['metadata']['name']} success",
            )

    def _release_claims(self, sts: Obj, ordinal: int) -> None:
        policy = (sts.get("spec") or {}).get("persistentVolumeClaimRetentionPolicy") or {}
        if policy.get("whenScaled") != "Delete":
            return
        for template in (sts.get("spec") or {}).get("volumeClaimTemplates") or []:
            name = sp.claim_name(template, sts, ordinal)
            claim = self.client.get(
                "", "persistentvolumeclaims", sts["metadata"]["namespace"], name
            )
            if claim is not None:
                self.client.delete(claim)

    def _delete(self, sts: Obj, pod: Obj) -> None:
        self.client.delete(pod)
        what = f"Pod {pod['metadata']['name']} in StatefulSet {sts['metadata']['name']}"
        self.client.event(sts, "SuccessfulDelete", f"delete {what} successful")

    def _sync_status(self, sts: Obj, update: str, current: str) -> float | None:
        spec = sts.get("spec") or {}
        wanted = int_or(spec.get("replicas"), 1)
        min_ready = int_or(spec.get("minReadySeconds"), 0)
        pods = self.client.owned_by(sts, "", "pods")
        live = [p for p in pods if not podstate.is_terminating(p)]
        ready = [p for p in pods if podstate.is_running_and_ready(p)]
        waits = [podstate.available_after(p, min_ready) for p in ready]
        updated = sum(1 for p in live if sp.revision_of(p) == update)
        status: Obj = {
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": len(pods),
            "readyReplicas": len(ready),
            "availableReplicas": sum(1 for w in waits if w == 0.0),
            "currentReplicas": sum(1 for p in live if sp.revision_of(p) == current),
            "updatedReplicas": updated,
            "currentRevision": current,
            "updateRevision": update,
            "collisionCount": int_or((sts.get("status") or {}).get("collisionCount"), 0),
        }
        rolling = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
        if rolling and updated == wanted == len(ready) == len(pods):
            status.update(currentRevision=update, currentReplicas=updated)
        status = omit_zero(status, "readyReplicas", "currentReplicas", "updatedReplicas")
        if status != sts.get("status"):
            self.client.update({**sts, "status": status}, status=True)
        pending = [w for w in waits if w is not None and w > 0]
        return min(pending) + 0.05 if pending else None
