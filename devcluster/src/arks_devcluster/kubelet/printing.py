"""Server-side printing of pods and nodes: the columns `kubectl get` shows on a real
cluster, computed as upstream's printers compute them.

- pods: NAME READY STATUS RESTARTS AGE, and with `-o wide` IP NODE NOMINATED NODE
  READINESS GATES. STATUS is the phase, or the first init container's trouble
  (`Init:0/1`, `Init:CrashLoopBackOff`), or the last container's waiting or terminated
  reason (`ContainerCreating`, `ImagePullBackOff`, `CrashLoopBackOff`, `Completed`,
  `Error`), `Terminating` when being deleted; RESTARTS adds "(5s ago)" after a restart.
- nodes: NAME STATUS ROLES AGE VERSION, and INTERNAL-IP EXTERNAL-IP OS-IMAGE
  KERNEL-VERSION CONTAINER-RUNTIME; STATUS is Ready / NotReady / Unknown, with
  `,SchedulingDisabled` when cordoned; ROLES from `node-role.kubernetes.io/<role>` labels.

`printer(group, plural)` gives (column definitions, cells of an object) or None for
kinds printed from their printer columns (`tables` asks it first for built-in kinds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from arks_devcluster import tables

Obj = dict[str, Any]
Printer = tuple[list[Obj], Callable[[Obj], list[Any]]]


def _column(name: str, priority: int = 0) -> Obj:
    return {"name": name, "type": "string", "format": "", "description": "", "priority": priority}


def _pod_reason(pod: Obj) -> tuple[str, int, int, str]:
    """(STATUS, ready containers, restarts, when the last restart ended)."""
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Pending"
    init = status.get("initContainerStatuses") or []
    initializing = False
    for index, item in enumerate(init):
        state = item.get("state") or {}
        ended = state.get("terminated")
        if ended is not None and ended.get("exitCode") == 0:
            continue
        initializing = True
        waiting = (state.get("waiting") or {}).get("reason")
        if ended is not None:
            reason = "Init:" + (ended.get("reason") or f"ExitCode:{ended.get('exitCode')}")
        elif waiting and waiting != "PodInitializing":
            reason = "Init:" + waiting
        else:
            reason = f"Init:{index}/{len(init)}"
        break
    ready = restarts = 0
    last = ""
    running = False
    for item in reversed(status.get("containerStatuses") or []):
        restarts += int(item.get("restartCount") or 0)
        finished = ((item.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        last = max(last, finished or "")
        state = item.get("state") or {}
        if initializing:
            continue
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state:
            ended = state["terminated"]
            reason = ended.get("reason") or f"ExitCode:{ended.get('exitCode')}"
        elif "running" in state and item.get("ready"):
            running = True
            ready += 1
    if reason == "Completed" and running:
        conditions = status.get("conditions") or []
        is_ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        reason = "Running" if is_ready else "NotReady"
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return reason, ready, restarts, last


def _pod_cells(pod: Obj) -> list[Any]:
    reason, ready, restarts, last = _pod_reason(pod)
    total = len((pod.get("spec") or {}).get("containers") or [])
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    restart_text = (
        f"{restarts} ({tables.human_age(last)} ago)" if restarts and last else str(restarts)
    )
    gates = spec.get("readinessGates") or []
    return [
        f"{ready}/{total}",
        reason,
        restart_text,
        tables.human_age(pod["metadata"].get("creationTimestamp")),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        f"{len(gates)}" if gates else "<none>",
    ]


def _node_cells(node: Obj) -> list[Any]:
    status, spec = node.get("status") or {}, node.get("spec") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    text = "Unknown" if ready is None or ready.get("status") == "Unknown" else "NotReady"
    if ready is not None and ready.get("status") == "True":
        text = "Ready"
    if spec.get("unschedulable"):
        text += ",SchedulingDisabled"
    prefix = "node-role.kubernetes.io/"
    labels = node["metadata"].get("labels") or {}
    roles = sorted(k[len(prefix) :] for k in labels if k.startswith(prefix) and k != prefix)
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    info = status.get("nodeInfo") or {}
    return [
        text,
        ",".join(roles) or "<none>",
        tables.human_age(node["metadata"].get("creationTimestamp")),
        info.get("kubeletVersion", ""),
        addresses.get("InternalIP") or "<none>",
        addresses.get("ExternalIP") or "<none>",
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


_POD_COLUMNS = [_column(n) for n in ("Ready", "Status", "Restarts", "Age")] + [
    _column(n, 1) for n in ("IP", "Node", "Nominated Node", "Readiness Gates")
]
_NODE_COLUMNS = [_column(n) for n in ("Status", "Roles", "Age", "Version")] + [
    _column(n, 1)
    for n in ("Internal-IP", "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime")
]


def printer(group: str, plural: str) -> Printer | None:
    if (group, plural) == ("", "pods"):
        return _POD_COLUMNS, _pod_cells
    if (group, plural) == ("", "nodes"):
        return _NODE_COLUMNS, _node_cells
    return None
