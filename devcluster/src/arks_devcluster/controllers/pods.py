"""Pods as the workload controllers see them: active, terminal, ready, available, and new
pods built from a pod template with a controller ownerReference.

Readiness is read from the `Ready` condition the kubelet writes; availability adds
`minReadySeconds` counted from that condition's lastTransitionTime (second resolution, as
upstream's timestamps).
"""

from __future__ import annotations

import copy
from typing import Any

from arks_devcluster.controllers.util import seconds_since
from arks_devcluster.local_client import controller_ref

Obj = dict[str, Any]


def phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def is_terminal(pod: Obj) -> bool:
    return phase(pod) in ("Succeeded", "Failed")


def is_terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def is_active(pod: Obj) -> bool:
    """controller.FilterActivePods: neither finished nor being deleted."""
    return not is_terminal(pod) and not is_terminating(pod)


def ready_condition(pod: Obj) -> Obj | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return dict(condition)
    return None


def is_ready(pod: Obj) -> bool:
    condition = ready_condition(pod)
    return condition is not None and condition.get("status") == "True"


def is_running_and_ready(pod: Obj) -> bool:
    return phase(pod) == "Running" and is_ready(pod)


def is_scheduled(pod: Obj) -> bool:
    return bool((pod.get("spec") or {}).get("nodeName"))


def available_after(pod: Obj, min_ready_seconds: int) -> float | None:
    """Seconds until a ready pod counts as available (0: it is); None if not ready."""
    if not is_ready(pod):
        return None
    if min_ready_seconds <= 0:
        return 0.0
    since = (ready_condition(pod) or {}).get("lastTransitionTime")
    return max(0.0, min_ready_seconds - seconds_since(since)) if since else 0.0


def is_available(pod: Obj, min_ready_seconds: int) -> bool:
    return available_after(pod, min_ready_seconds) == 0.0


def restarts(pod: Obj) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return sum(int(s.get("restartCount") or 0) for s in statuses)


def controller_of(obj: Obj) -> Obj | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def new_pod(
    template: Obj,
    owner: Obj,
    *,
    name: str | None = None,
    generate_name: str | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> Obj:
    """controller.GetPodFromTemplate: the template's labels, annotations, finalizers and
    spec, a controller reference to `owner`, in the owner's namespace."""
    template_meta = template.get("metadata") or {}
    meta: Obj = {
        "namespace": owner["metadata"]["namespace"],
        "labels": {**(template_meta.get("labels") or {}), **(labels or {})},
        "ownerReferences": [controller_ref(owner)],
    }
    merged_annotations = {**(template_meta.get("annotations") or {}), **(annotations or {})}
    if merged_annotations:
        meta["annotations"] = merged_annotations
    if template_meta.get("finalizers"):
        meta["finalizers"] = list(template_meta["finalizers"])
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = generate_name or f"{owner['metadata']['name']}-"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": copy.deepcopy(template.get("spec") or {}),
    }
