"""The ReplicaSets a Deployment makes (deployment/util): the name
`<deployment>-<pod-template-hash>`, the hash label added to the template, the selector
and the ReplicaSet's own labels, and the annotations copied from the Deployment
(all but kubectl's last-applied configuration and the Deployment's own bookkeeping) with
`deployment.kubernetes.io/revision`, `desired-replicas` and `max-replicas`.
"""

from __future__ import annotations

import copy
from typing import Any

from arks_devcluster.controllers import rollout
from arks_devcluster.controllers.util import template_hash
from arks_devcluster.local_client import controller_ref

Obj = dict[str, Any]
HASH = "pod-template-hash"
SKIPPED = {
    "kubectl.kubernetes.io/last-applied-configuration",
    rollout.REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
}


def annotate(d: Obj, rs: Obj, revision: int) -> None:
    """SetNewReplicaSetAnnotations (in place)."""
    annotations = rs["metadata"].setdefault("annotations", {})
    for key, value in (d["metadata"].get("annotations") or {}).items():
        if key not in SKIPPED:
            annotations[key] = value
    annotations[rollout.REVISION] = str(revision)
    replica_annotations(d, rs)


def replica_annotations(d: Obj, rs: Obj) -> None:
    """SetReplicasAnnotations (in place)."""
    annotations = rs["metadata"].setdefault("annotations", {})
    annotations["deployment.kubernetes.io/desired-replicas"] = str(rollout.replicas(d))
    annotations["deployment.kubernetes.io/max-replicas"] = str(
        rollout.replicas(d) + rollout.max_surge(d)
    )


def new_replica_set(d: Obj, revision: int, collision_count: int | None, size: int) -> Obj:
    spec = d["spec"]
    pod_hash = template_hash(spec.get("template") or {}, collision_count)
    template = copy.deepcopy(spec.get("template") or {})
    template.setdefault("metadata", {}).setdefault("labels", {})[HASH] = pod_hash
    selector = copy.deepcopy(spec["selector"])
    selector.setdefault("matchLabels", {})[HASH] = pod_hash
    rs: Obj = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{d['metadata']['name']}-{pod_hash}",
            "namespace": d["metadata"]["namespace"],
            "labels": dict(template["metadata"]["labels"]),
            "ownerReferences": [controller_ref(d)],
        },
        "spec": {
            "replicas": size,
            "minReadySeconds": spec.get("minReadySeconds", 0),
            "selector": selector,
            "template": template,
        },
    }
    annotate(d, rs, revision)
    return rs
