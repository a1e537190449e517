"""A Job's status as the Job controller keeps it (pkg/controller/job): the tally of
finished pods, the success criteria, the conditions with their upstream reasons and
messages, and the pod counts.

Each finished pod is counted once: `tally` takes the set of pod uids already counted
(kept by the controller) and adds the new ones to `succeeded` / `failed` (and, for
Indexed Jobs, to `completedIndexes`). Counters that are 0 are omitted, as upstream;
`ready`, `terminating` and `uncountedTerminatedPods` are always present.
"""

from __future__ import annotations

from typing import Any

from arks_devcluster.controllers import job_pods as jp
from arks_devcluster.controllers import pods as podstate
from arks_devcluster.controllers.util import get_condition, int_or
from arks_devcluster.store import now

Obj = dict[str, Any]
BACKOFF = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE = ("DeadlineExceeded", "Job was active longer than specified deadline")
COMPLETED = ("CompletionsReached", "Reached expected number of succeeded pods")


def finished(status: Obj) -> bool:
    return any(
        (get_condition(status, kind) or {}).get("status") == "True"
        for kind in ("Complete", "Failed")
    )


def add_condition(status: Obj, kind: str, reason: str, message: str) -> None:
    """Append a True condition unless one of that type is there already."""
    if get_condition(status, kind):
        return
    stamp = now()
    condition = {
        "type": kind,
        "status": "True",
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }
    status["conditions"] = [*(status.get("conditions") or []), condition]


def resume(status: Obj) -> None:
    """A Suspended condition turns False (JobResumed) once the Job is resumed."""
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Suspended" and condition.get("status") == "True":
            stamp = now()
            condition.update(status="False", reason="JobResumed", message="Job resumed")
            condition.update(lastProbeTime=stamp, lastTransitionTime=stamp)


def tally(job: Obj, status: Obj, pods: list[Obj], seen: set[str]) -> bool:
    """Count the finished pods not in `seen` (which gains them); True if one failed."""
    spec = job.get("spec") or {}
    indexed = spec.get("completionMode") == "Indexed"
    done = jp.parse_indexes(status.get("completedIndexes"))
    failed = False
    for pod in pods:
        if not podstate.is_terminal(pod) or pod["metadata"]["uid"] in seen:
            continue
        seen.add(pod["metadata"]["uid"])
        if podstate.phase(pod) == "Succeeded":
            status["succeeded"] = int_or(status.get("succeeded"), 0) + 1
            index = jp.index_of(pod)
            if indexed and index is not None and index < int_or(spec.get("completions"), 1):
                done.add(index)
        else:
            status["failed"] = int_or(status.get("failed"), 0) + 1
            failed = True
    if indexed:
        status["completedIndexes"] = jp.format_indexes(done)
    return failed


def succeeded(job: Obj, status: Obj, active: list[Obj]) -> bool:
    """The success criteria: completions reached (every index, for Indexed Jobs);
    without completions, one pod succeeded and none is active."""
    spec = job.get("spec") or {}
    count = int_or(status.get("succeeded"), 0)
    if spec.get("completionMode") == "Indexed":
        done = jp.parse_indexes(status.get("completedIndexes"))
        return len(done) >= int_or(spec.get("completions"), 1)
    if spec.get("completions") is None:
        return count > 0 and not active
    return count >= int_or(spec.get("completions"), 1)


def with_counts(status: Obj, pods: list[Obj]) -> Obj:
    active = [p for p in pods if podstate.is_active(p)]
    out = {
        **status,
        "active": len(active),
        "ready": sum(1 for p in active if podstate.is_ready(p)),
        "terminating": sum(1 for p in pods if podstate.is_terminating(p)),
        "uncountedTerminatedPods": {},
    }
    return {k: v for k, v in out.items() if k not in ("active", "succeeded", "failed") or v}
