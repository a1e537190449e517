"""The strategic-merge patch that turns a worker pod template into the leader's.

RoleBasedGroup describes a LeaderWorkerSet role by one pod template plus
`leaderWorkerSet.patchLeaderTemplate` / `patchWorkerTemplate`. Arks renders the worker
template as the role's template and patches the leader in: it only adds (labels, the
port, the probes) and replaces (the command, env), which a strategic merge does exactly;
a field only the worker has is deleted with `null`, an env entry with `$patch: delete`.
"""

from __future__ import annotations

from typing import Any

from arks_reconciler.kube.objects import Obj


def _map_patch(base: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    patch = {k: v for k, v in target.items() if base.get(k) != v}
    patch.update({k: None for k in base if k not in target})
    return patch


def _env_patch(base: list[Obj], target: list[Obj]) -> list[Obj]:
    by_name = {e["name"]: e for e in base}
    patch = [e for e in target if by_name.get(e["name"]) != e]
    names = {e["name"] for e in target}
    patch += [{"name": e["name"], "$patch": "delete"} for e in base if e["name"] not in names]
    return patch


def _container_patch(base: Obj, target: Obj) -> Obj:
    patch: Obj = {"name": target["name"]}
    for key in sorted(set(base) | set(target)):
        if key == "name" or base.get(key) == target.get(key):
            continue
        if key == "env":
            env = _env_patch(base.get("env") or [], target.get("env") or [])
            if env:
                patch["env"] = env
        else:
            patch[key] = target.get(key)
    return patch


def template_patch(base: Obj, target: Obj) -> Obj:
    """A strategic-merge patch making pod template `base` into `target` (same containers,
    by name, and the same pod-level fields but for what a leader adds)."""
    patch: Obj = {}
    metadata = {
        key: changed
        for key in ("labels", "annotations")
        if (
            changed := _map_patch(
                base["metadata"].get(key) or {}, target["metadata"].get(key) or {}
            )
        )
    }
    if metadata:
        patch["metadata"] = metadata
    spec = _map_patch(
        {k: v for k, v in base["spec"].items() if k != "containers"},
        {k: v for k, v in target["spec"].items() if k != "containers"},
    )
    base_containers = {c["name"]: c for c in base["spec"]["containers"]}
    containers = [
        _container_patch(base_containers.get(c["name"], {}), c)
        for c in target["spec"]["containers"]
    ]
    spec["containers"] = containers
    patch["spec"] = spec
    return patch
