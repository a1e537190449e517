"""The scale subresource (`/scale`): an `autoscaling/v1` Scale view of an object's replicas.

Deployments, ReplicaSets and StatefulSets have it at `.spec.replicas` / `.status.replicas`;
a CRD declares its own paths (`subresources.scale`). Reading gives the Scale; a PUT or
patch of the Scale writes only the spec replicas path of the object (a main-path write:
the generation moves, the object is admitted again). A missing or negative replica count
is 422.
"""

from __future__ import annotations

import copy
from typing import Any

from arks_devcluster.errors import ApiError
from arks_devcluster.resources import ResourceType, ScaleSubresource

Obj = dict[str, Any]


def _parts(path: str) -> list[str]:
    return [p for p in path.split(".") if p]


def _get(obj: Obj, path: str) -> Any:
    value: Any = obj
    for part in _parts(path):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _set(obj: Obj, path: str, value: Any) -> None:
    parts = _parts(path)
    node = obj
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def scale_of(rtype: ResourceType, obj: Obj) -> Obj:
    paths = rtype.scale or ScaleSubresource()
    meta = obj["metadata"]
    status: Obj = {"replicas": _get(obj, paths.status_replicas) or 0}
    if paths.label_selector and _get(obj, paths.label_selector):
        status["selector"] = _get(obj, paths.label_selector)
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": _get(obj, paths.spec_replicas) or 0},
        "status": status,
    }


def scaled(rtype: ResourceType, obj: Obj, wanted: Obj) -> Obj:
    """The object with the replicas of the Scale `wanted` (resourceVersion carried)."""
    replicas = (wanted.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise ApiError(
            422,
            "Invalid",
            f'Scale.autoscaling "{obj["metadata"]["name"]}" is invalid: spec.replicas: '
            f"Invalid value: {replicas!r}: must be greater than or equal to 0",
        )
    out = copy.deepcopy(obj)
    _set(out, (rtype.scale or ScaleSubresource()).spec_replicas, replicas)
    version = (wanted.get("metadata") or {}).get("resourceVersion")
    if version:
        out["metadata"]["resourceVersion"] = version
    return out
