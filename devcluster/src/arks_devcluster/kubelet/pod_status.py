"""A pod's status from its containers' statuses, as the kubelet computes it.

- phase (upstream's getPhase): Pending while init containers have not all succeeded or a
  container waits for the first time; Running while one runs (or, restarting, has run);
  Succeeded when all ended with 0; Failed when one failed and none will restart (an init
  container failing under restartPolicy Never fails the pod). Once terminal it stays.
- conditions in upstream's order: PodReadyToStartContainers, Initialized
  (ContainersNotInitialized "containers with incomplete status: [a]"), Ready and
  ContainersReady (ContainersNotReady "containers with unready status: [a b]",
  PodCompleted when the pod has finished), PodScheduled; lastTransitionTime kept while
  a condition's status does not change.
- hostIP(s) 127.0.0.1, podIP(s), startTime, init and regular container statuses, qosClass.
"""

from __future__ import annotations

from typing import Any

from arks_devcluster.kubelet.container_state import ContainerStatus
from arks_devcluster.kubelet.nodes import HOST_IP
from arks_devcluster.kubelet.quantities import qos_class
from arks_devcluster.store import now

Obj = dict[str, Any]
TERMINAL = ("Succeeded", "Failed")


def _init_done(status: ContainerStatus) -> bool:
    return (status.state.get("terminated") or {}).get("exitCode") == 0


def phase(init: list[ContainerStatus], main: list[ContainerStatus], policy: str) -> str:
    pending_init = failed_init = 0
    for status in init:
        ended = status.state.get("terminated")
        if ended is not None:
            if ended.get("exitCode") != 0:
                failed_init += 1
        elif (
            "waiting" in status.state
            and (status.last_state.get("terminated") or {}).get("exitCode", 0) != 0
        ):
            failed_init += 1
        else:
            pending_init += 1
    if failed_init and policy == "Never":
        return "Failed"
    if pending_init or failed_init:
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for status in main:
        if status.is_running:
            running += 1
        elif "terminated" in status.state:
            stopped += 1
            succeeded += status.state["terminated"].get("exitCode") == 0
        elif status.last_state.get("terminated"):
            stopped += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if policy == "Never" else "Running"
    return "Pending"


def _condition(kind: str, ok: bool, reason: str | None = None, message: str | None = None) -> Obj:
    out: Obj = {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None}
    if not ok and reason:
        out["reason"] = reason
    if not ok and message:
        out["message"] = message
    return out


def _names(statuses: list[ContainerStatus]) -> str:
    return "[" + " ".join(s.name for s in statuses) + "]"


def pod_status(
    pod: Obj,
    init: list[ContainerStatus],
    main: list[ContainerStatus],
    *,
    phase_now: str,
    pod_ip: str | None,
    start_time: str,
    sandbox: bool,
) -> Obj:
    old = pod.get("status") or {}
    terminal = phase_now in TERMINAL
    not_initialized = [s for s in init if not _init_done(s)]
    unready = [s for s in main if not s.ready]
    ready = not unready and not terminal
    ready_reason = "PodCompleted" if terminal else "ContainersNotReady"
    ready_message = None if terminal else f"containers with unready status: {_names(unready)}"
    conditions = [
        _condition("PodReadyToStartContainers", sandbox and not terminal),
        _condition(
            "Initialized",
            not not_initialized,
            "ContainersNotInitialized",
            f"containers with incomplete status: {_names(not_initialized)}",
        ),
        _condition("Ready", ready, ready_reason, ready_message),
        _condition("ContainersReady", ready, ready_reason, ready_message),
    ]
    previous = {c.get("type"): c for c in old.get("conditions") or []}
    scheduled = previous.get("PodScheduled") or {
        "type": "PodScheduled",
        "status": "True",
        "lastProbeTime": None,
    }
    stamp = now()
    for condition in conditions:
        before = previous.get(condition["type"])
        same = before is not None and before.get("status") == condition["status"]
        condition["lastTransitionTime"] = (
            (before or {}).get("lastTransitionTime") if same else stamp
        )
    conditions.append(
        {**scheduled, "lastTransitionTime": scheduled.get("lastTransitionTime") or stamp}
    )
    status: Obj = {
        "phase": phase_now,
        "conditions": conditions,
        "hostIP": HOST_IP,
        "hostIPs": [{"ip": HOST_IP}],
        "startTime": start_time,
        "qosClass": qos_class(pod),
    }
    if pod_ip:
        status.update(podIP=pod_ip, podIPs=[{"ip": pod_ip}])
    if init:
        status["initContainerStatuses"] = [s.as_status() for s in init]
    status["containerStatuses"] = [s.as_status() for s in main]
    return status
