"""The RoleBasedGroupSet controller (sgl-project/rbg; Events from `rbgset-controller`),
active while its CRD is installed: `spec.replicas` RoleBasedGroups `<set>-<index>` with
labels `rolebasedgroupset.workloads.x-k8s.io/name` and `/rbg-index`, the template's roles
and the set's exclusive-topology annotation. Groups of an index beyond replicas (or
without a readable index) are deleted; groups whose roles differ from the template are
updated. Status: replicas (groups existing), readyReplicas (groups whose Ready condition
is True), condition Ready (AllReplicasReady / ReplicasNotReady).
"""

from __future__ import annotations

import copy
from typing import Any

from arks_devcluster.controllers.loop import Controller
from arks_devcluster.controllers.util import get_condition, int_or, set_condition
from arks_devcluster.local_client import controller_ref

Obj = dict[str, Any]
GROUP, PLURAL = "workloads.x-k8s.io", "rolebasedgroupsets"
SET_NAME = "rolebasedgroupset.workloads.x-k8s.io/name"
INDEX = "rolebasedgroupset.workloads.x-k8s.io/rbg-index"
EXCLUSIVE = "rolebasedgroup.workloads.x-k8s.io/exclusive-topology"


class RoleBasedGroupSetController(Controller):
    primary = (GROUP, PLURAL)
    owns = ((GROUP, "rolebasedgroups"),)
    manager = "rbg"
    component = "rbgset-controller"

    def reconcile(self, namespace: str, name: str) -> float | None:
        if not self.client.served(GROUP, PLURAL) or not self.client.served(
            GROUP, "rolebasedgroups"
        ):
            return None
        rbgs = self.client.get(GROUP, PLURAL, namespace, name)
        if rbgs is None or rbgs["metadata"].get("deletionTimestamp"):
            return None
        spec = rbgs.get("spec") or {}
        wanted = int_or(spec.get("replicas"), 1)
        roles = (spec.get("template") or {}).get("roles") or []
        exclusive = (rbgs["metadata"].get("annotations") or {}).get(EXCLUSIVE)
        existing: dict[int, Obj] = {}
        for rbg in self.client.list(GROUP, "rolebasedgroups", namespace, f"{SET_NAME}={name}"):
            index = (rbg["metadata"].get("labels") or {}).get(INDEX, "")
            if not index.isdigit() or int(index) >= wanted:
                self.client.delete(rbg)
                continue
            existing[int(index)] = rbg
            annotations = dict(rbg["metadata"].get("annotations") or {})
            annotations.pop(EXCLUSIVE, None)
            if exclusive is not None:
                annotations[EXCLUSIVE] = exclusive
            update = copy.deepcopy(rbg)
            update["spec"]["roles"] = roles
            update["metadata"]["annotations"] = annotations
            if update != rbg:
                self.client.update(update)
        for index in range(wanted):
            if index not in existing:
                meta: Obj = {
                    "name": f"{name}-{index}",
                    "namespace": namespace,
                    "labels": {SET_NAME: name, INDEX: str(index)},
                    "ownerReferences": [controller_ref(rbgs)],
                }
                if exclusive is not None:
                    meta["annotations"] = {EXCLUSIVE: exclusive}
                api_version = self.client.rtype(GROUP, "rolebasedgroups").api_version
                self.client.create(
                    {
                        "apiVersion": api_version,
                        "kind": "RoleBasedGroup",
                        "metadata": meta,
                        "spec": {"roles": roles},
                    }
                )
        groups = self.client.list(GROUP, "rolebasedgroups", namespace, f"{SET_NAME}={name}")
        ready = sum(
            1
            for g in groups
            if (get_condition(g.get("status") or {}, "Ready") or {}).get("status") == "True"
        )
        status = copy.deepcopy(rbgs.get("status") or {})
        status.update(replicas=len(groups), readyReplicas=ready)
        if ready >= wanted:
            set_condition(
                status,
                "Ready",
                "True",
                "AllReplicasReady",
                "All RoleBasedGroup replicas are ready.",
                update_time=False,
            )
        else:
            message = f"Waiting for replicas to be ready ({ready}/{wanted})"
            set_condition(status, "Ready", "False", "ReplicasNotReady", message, update_time=False)
        if status != rbgs.get("status"):
            self.client.update({**rbgs, "status": status}, status=True)
        return None
