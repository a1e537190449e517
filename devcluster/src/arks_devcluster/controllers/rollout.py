"""The arithmetic of a Deployment rollout (pkg/controller/deployment/util and rolling.go),
as pure functions over ReplicaSet objects: how far the new ReplicaSet may grow, which old
ReplicaSets shrink and by how much, when a rollout is complete or progressing, and which
old ReplicaSets the history limit lets go.

Defaults are the API server's (the dev cluster does not default built-in kinds): 1
replica, RollingUpdate with maxSurge and maxUnavailable 25% (surge rounded up,
unavailable down, both 0 meaning unavailable 1), revisionHistoryLimit 10,
progressDeadlineSeconds 600.
"""

from __future__ import annotations

from typing import Any

from arks_devcluster.controllers.util import int_or, parse_time, scaled_value

Obj = dict[str, Any]
REVISION = "deployment.kubernetes.io/revision"


def replicas(obj: Obj) -> int:
    return int_or((obj.get("spec") or {}).get("replicas"), 1)


def counted(obj: Obj, field: str) -> int:
    return int_or((obj.get("status") or {}).get(field), 0)


def revision(rs: Obj) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def is_rolling(d: Obj) -> bool:
    strategy = (d.get("spec") or {}).get("strategy") or {}
    return bool(strategy.get("type", "RollingUpdate") == "RollingUpdate")


def fenceposts(d: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) resolved against the desired replicas."""
    rolling = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    desired = replicas(d)
    surge = scaled_value(rolling.get("maxSurge", "25%"), desired, round_up=True)
    unavailable = scaled_value(rolling.get("maxUnavailable", "25%"), desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(d: Obj) -> int:
    return fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: Obj) -> int:
    if not is_rolling(d) or replicas(d) == 0:
        return 0
    return min(fenceposts(d)[1], replicas(d))


def new_rs_replicas(d: Obj, all_rs: list[Obj], new_rs: Obj | None) -> int:
    """NewRSNewReplicas: the size the new ReplicaSet may grow to now."""
    current = replicas(new_rs) if new_rs else 0
    if not is_rolling(d):
        return replicas(d)
    total = sum(replicas(rs) for rs in all_rs)
    allowed = replicas(d) + max_surge(d)
    if total >= allowed:
        return current
    return current + min(allowed - total, replicas(d) - current)


def by_creation(rs_list: list[Obj]) -> list[Obj]:
    return sorted(
        rs_list, key=lambda rs: (rs["metadata"]["creationTimestamp"], rs["metadata"]["name"])
    )


def old_scale_downs(d: Obj, old: list[Obj], new_rs: Obj | None) -> dict[str, int]:
    """reconcileOldReplicaSets: the new size of each old ReplicaSet to shrink (by name):
    unhealthy replicas first, then available ones down to the minimum availability."""
    if sum(replicas(rs) for rs in old) == 0:
        return {}
    sizes = {rs["metadata"]["name"]: replicas(rs) for rs in old}
    new_size = replicas(new_rs) if new_rs else 0
    min_available = replicas(d) - max_unavailable(d)
    new_unavailable = new_size - (counted(new_rs, "availableReplicas") if new_rs else 0)
    budget = sum(sizes.values()) + new_size - min_available - new_unavailable
    if budget <= 0:
        return {}
    for rs in by_creation(old):  # cleanupUnhealthyReplicas
        name = rs["metadata"]["name"]
        unhealthy = sizes[name] - counted(rs, "availableReplicas")
        if budget <= 0:
            break
        if sizes[name] == 0 or unhealthy <= 0:
            continue
        cut = min(budget, unhealthy)
        sizes[name] -= cut
        budget -= cut
    available = sum(counted(rs, "availableReplicas") for rs in old)
    available += counted(new_rs, "availableReplicas") if new_rs else 0
    excess = available - min_available  # scaleDownOldReplicaSetsForRollingUpdate
    for rs in by_creation(old):
        name = rs["metadata"]["name"]
        if excess <= 0:
            break
        if sizes[name] == 0:
            continue
        cut = min(sizes[name], excess)
        sizes[name] -= cut
        excess -= cut
    return {name: size for name, size in sizes.items() if size != replicas(_named(old, name))}


def _named(rs_list: list[Obj], name: str) -> Obj:
    return next(rs for rs in rs_list if rs["metadata"]["name"] == name)


def complete(d: Obj, status: Obj) -> bool:
    """DeploymentComplete: every replica updated and available, nothing old left."""
    desired = replicas(d)
    return (
        int_or(status.get("updatedReplicas"), 0) == desired
        and int_or(status.get("replicas"), 0) == desired
        and int_or(status.get("availableReplicas"), 0) == desired
        and int_or(status.get("observedGeneration"), 0) >= d["metadata"].get("generation", 1)
    )


def progressing(old: Obj, new: Obj) -> bool:
    """DeploymentProgressing: more updated, ready or available replicas, or fewer old."""

    def value(status: Obj, field: str) -> int:
        return int_or(status.get(field), 0)

    old_old = value(old, "replicas") - value(old, "updatedReplicas")
    new_old = value(new, "replicas") - value(new, "updatedReplicas")
    return (
        value(new, "updatedReplicas") > value(old, "updatedReplicas")
        or new_old < old_old
        or value(new, "readyReplicas") > value(old, "readyReplicas")
        or value(new, "availableReplicas") > value(old, "availableReplicas")
    )


def progress_deadline(d: Obj) -> int:
    return int_or((d.get("spec") or {}).get("progressDeadlineSeconds"), 600)


def deadline_left(d: Obj, condition: Obj | None, now_ts: float) -> float | None:
    """Seconds left before a progressing rollout times out (None: no deadline runs)."""
    if condition is None or condition.get("reason") in (
        "NewReplicaSetAvailable",
        "DeploymentPaused",
    ):
        return None
    since = parse_time(condition.get("lastUpdateTime"))
    return None if since is None else since.timestamp() + progress_deadline(d) - now_ts


def prunable(d: Obj, old: list[Obj]) -> list[Obj]:
    """cleanupDeployment: old ReplicaSets beyond revisionHistoryLimit, oldest revision
    first, among those scaled to zero with no pods left."""
    limit = int_or((d.get("spec") or {}).get("revisionHistoryLimit"), 10)
    idle = [
        rs
        for rs in old
        if replicas(rs) == 0
        and counted(rs, "replicas") == 0
        and not rs["metadata"].get("deletionTimestamp")
    ]
    idle.sort(key=lambda rs: (revision(rs), rs["metadata"]["creationTimestamp"]))
    return idle[: max(len(idle) - limit, 0)]
