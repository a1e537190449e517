"""The PersistentVolumeClaim binder (kube-controller-manager's
`persistentvolume-controller`), reduced to what a one-machine cluster needs: every claim
is bound at once, as if a dynamic provisioner had made a volume for it.

A pending claim gets `spec.volumeName` `pvc-<uid>`, the annotations
`pv.kubernetes.io/bind-completed: "yes"` and `pv.kubernetes.io/bound-by-controller:
"yes"`, and status `phase: Bound` with `capacity.storage` = the requested storage and
the claim's `accessModes`. There are no PersistentVolume objects, storage classes are not
consulted (WaitForFirstConsumer included) and no Events are recorded; a claim that
already names a volume is bound to that name as is.
"""

from __future__ import annotations

from typing import Any

from arks_devcluster.controllers.loop import Controller

Obj = dict[str, Any]
ANNOTATIONS = {
    "pv.kubernetes.io/bind-completed": "yes",
    "pv.kubernetes.io/bound-by-controller": "yes",
}


class ClaimBinder(Controller):
    primary = ("", "persistentvolumeclaims")
    component = "persistentvolume-controller"

    def reconcile(self, namespace: str, name: str) -> float | None:
        claim = self.client.get("", "persistentvolumeclaims", namespace, name)
        if claim is None or claim["metadata"].get("deletionTimestamp"):
            return None
        spec = claim.setdefault("spec", {})
        annotations = claim["metadata"].get("annotations") or {}
        if not spec.get("volumeName") or not ANNOTATIONS.items() <= annotations.items():
            spec.setdefault("volumeName", f"pvc-{claim['metadata']['uid']}")
            claim["metadata"]["annotations"] = {**annotations, **ANNOTATIONS}
            claim = self.client.update(claim)
        requested = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
        status: Obj = {"phase": "Bound", "accessModes": list(spec.get("accessModes") or [])}
        if requested is not None:
            status["capacity"] = {"storage": requested}
        if claim.get("status") != status:
            self.client.update({**claim, "status": status}, status=True)
        return None
