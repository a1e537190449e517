"""What runs for an application, read from its pods (pure functions of the pod cache).

A replica is a group: the pods of one LeaderWorkerSet group (same
`leaderworkerset.sigs.k8s.io/group-key`, leader = worker index 0), or a single pod
(Deployment). It is Ready when all its pods are Ready and the group is complete; its
backend URL is the leader pod's IP on port 8080. Waiting reasons (ImagePullBackOff,
CrashLoopBackOff, Unschedulable, …) become the replica's message, so the application's
Ready condition says what is wrong. A pod whose `arks.ai/template-hash` differs from the
plan's runs an out-of-date template (not `updated`); pods without the label (created by
upstream Arks) count as up to date.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from arks_reconciler import plans
from arks_reconciler.commands import KUBE_ENGINE_PORT
from arks_reconciler.kube.objects import (
    PD_ROLE_LABEL,
    ROLE_LABEL,
    TEMPLATE_HASH,
    WORKER,
    WORKLOAD_ROLE_LABEL,
)
from arks_reconciler.platform import ReplicaObservation, ReplicaState

Obj = dict[str, Any]
LWS_PREFIX = "leaderworkerset.sigs.k8s.io/"
GROUP_KEY = LWS_PREFIX + "group-key"
WORKER_INDEX = LWS_PREFIX + "worker-index"
SIZE = LWS_PREFIX + "size"
BACKOFF_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "InvalidImageName",
        "RunContainerError",
    }
)


def _labels(pod: Obj) -> Mapping[str, str]:
    return (pod.get("metadata") or {}).get("labels") or {}


def _name(pod: Obj) -> str:
    return str(pod["metadata"]["name"])


def role_of(pod: Obj) -> str:
    labels = _labels(pod)
    return labels.get(ROLE_LABEL) or labels.get(PD_ROLE_LABEL) or plans.INFERENCE_ROLE


def _ready(pod: Obj) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _restarts(pod: Obj) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return sum(int(s.get("restartCount") or 0) for s in statuses)


def _trouble(pod: Obj) -> tuple[bool, str]:
    """(backing off, why the pod is not ready: '' when nothing is known)."""
    status = pod.get("status") or {}
    for cs in [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason and reason != "ContainerCreating":
            detail = f": {waiting['message']}" if waiting.get("message") else ""
            return reason in BACKOFF_REASONS, f"pod {_name(pod)} {reason}{detail}"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            why = cond.get("message") or cond.get("reason") or "not scheduled"
            return False, f"pod {_name(pod)} {cond.get('reason') or 'Pending'}: {why}"
    if status.get("phase") == "Failed":
        return True, f"pod {_name(pod)} failed: {status.get('reason') or status.get('message')}"
    return False, ""


def _leader_first(pods: list[Obj]) -> list[Obj]:
    def rank(pod: Obj) -> tuple[int, str]:
        labels = _labels(pod)
        worker = labels.get(WORKER_INDEX, "0") != "0" or labels.get(WORKLOAD_ROLE_LABEL) == WORKER
        return (1 if worker else 0, _name(pod))

    return sorted(pods, key=rank)


def group_pods(pods: Iterable[Obj]) -> dict[str, list[Obj]]:
    """Pods by replica (LWS group key, else the pod itself), leader first."""
    groups: dict[str, list[Obj]] = {}
    for pod in pods:
        key = _labels(pod).get(GROUP_KEY) or f"pod/{_name(pod)}"
        groups.setdefault(key, []).append(pod)
    return {k: _leader_first(v) for k, v in groups.items()}


def replica(pods: list[Obj], *, expected_hash: str | None) -> ReplicaObservation:
    """One replica from its pods (leader first)."""
    leader = pods[0]
    annotations = (leader.get("metadata") or {}).get("annotations") or {}
    size = int(annotations.get(SIZE) or 1)
    restarts = sum(_restarts(p) for p in pods)
    pod_hash = _labels(leader).get(TEMPLATE_HASH)
    updated = expected_hash is None or pod_hash is None or pod_hash == expected_hash
    ip = (leader.get("status") or {}).get("podIP")
    url = f"http://{ip}:{KUBE_ENGINE_PORT}" if ip else None
    base = ReplicaObservation(
        name=_name(leader),
        role=role_of(leader),
        state=ReplicaState.STARTING,
        url=url,
        updated=updated,
        restarts=restarts,
    )
    if any((p.get("metadata") or {}).get("deletionTimestamp") for p in pods):
        return dataclasses.replace(base, state=ReplicaState.STOPPING)
    if len(pods) >= size and all(_ready(p) for p in pods):
        return dataclasses.replace(base, state=ReplicaState.READY)
    messages = [_trouble(p) for p in pods]
    backoff = any(b for b, _ in messages)
    message = next((m for _, m in messages if m), "")
    if not message and len(pods) < size:
        message = f"{len(pods)}/{size} pods of the group exist"
    if backoff:
        state = ReplicaState.BACKOFF
    elif restarts and all((p.get("status") or {}).get("phase") == "Running" for p in pods):
        state = ReplicaState.UNREADY
    else:
        state = ReplicaState.STARTING
    return dataclasses.replace(base, state=state, message=message)


def replicas(
    pods: Iterable[Obj], expected_hashes: Mapping[str, str]
) -> tuple[ReplicaObservation, ...]:
    """Every replica of an application's pods; `expected_hashes` maps role → template hash."""
    out = [
        replica(group, expected_hash=expected_hashes.get(role_of(group[0])))
        for group in group_pods(pods).values()
    ]
    return tuple(sorted(out, key=lambda r: (r.role, r.name)))
