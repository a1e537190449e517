"""The Job controller (kube-controller-manager's `job-controller`) and the
ttl-after-finished controller.

Runs pods (see `job_pods`) until the Job succeeds or fails, as 1.32 does:

- NonIndexed: up to `parallelism` active pods until `completions` pods succeeded (without
  completions, until one succeeds and none is active); Indexed: one pod per index not yet
  succeeded, `completedIndexes` recorded;
- a failed pod is replaced after upstream's backoff (10 s doubling, at most 6 min, from
  the last failure; `POD_FAILURE_BACKOFF`); more than `backoffLimit` (6) failures, or
  `activeDeadlineSeconds` passed since startTime, makes it fail: condition
  `FailureTarget` (BackoffLimitExceeded / DeadlineExceeded), active pods deleted (and
  counted failed), then `Failed` once none is left, with a Warning Event of that reason;
- success: `SuccessCriteriaMet` (CompletionsReached), then `Complete` with
  completionTime once no pod is active, Event `Completed`. `kubectl wait
  --for=condition=complete` works;
- `suspend`: active pods deleted, condition `Suspended`;
- `ttlSecondsAfterFinished`: the Job is deleted (foreground) that long after finishing.

Status: active, ready, succeeded, failed, terminating, uncountedTerminatedPods, startTime,
completionTime, conditions. Terminal pods are counted once each, remembered in memory
rather than through the `batch.kubernetes.io/job-tracking` finalizer (pods carry no
finalizer here). Not done: podFailurePolicy, successPolicy, backoffLimitPerIndex,
podReplacementPolicy, managedBy.
"""

from __future__ import annotations

import time
from typing import Any

from arks_devcluster.controllers import job_pods as jp
from arks_devcluster.controllers import job_status as js
from arks_devcluster.controllers import pods as podstate
from arks_devcluster.controllers.loop import Controller
from arks_devcluster.controllers.replicaset import deletion_order
from arks_devcluster.controllers.util import get_condition, int_or, seconds_since
from arks_devcluster.store import now

Obj = dict[str, Any]
POD_FAILURE_BACKOFF = 10.0
MAX_BACKOFF = 360.0


class JobController(Controller):
    primary = ("batch", "jobs")
    owns = (("", "pods"),)
    component = "job-controller"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._counted: dict[str, set[str]] = {}  # job uid -> uids of terminal pods counted
        self._last_failure: dict[str, float] = {}

    def reconcile(self, namespace: str, name: str) -> float | None:
        job = self.client.get("batch", "jobs", namespace, name)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return None
        status: Obj = dict(job.get("status") or {})
        if js.finished(status):
            return self._expire(job, status)
        spec = job.get("spec") or {}
        pods = self.client.owned_by(job, "", "pods")
        uid = job["metadata"]["uid"]
        if uid not in self._counted:  # first look: what the status shows is counted already
            counted = int_or(status.get("succeeded"), 0) + int_or(status.get("failed"), 0)
            finished_pods = {p["metadata"]["uid"] for p in pods if podstate.is_terminal(p)}
            self._counted[uid] = finished_pods if counted else set()
        if js.tally(job, status, pods, self._counted[uid]):
            self._last_failure[uid] = time.monotonic()
        active = [p for p in pods if podstate.is_active(p)]
        if not status.get("startTime") and not spec.get("suspend"):
            status["startTime"] = now()
        deadline = spec.get("activeDeadlineSeconds")
        left = (
            deadline - seconds_since(status.get("startTime")) if isinstance(deadline, int) else None
        )
        if not get_condition(status, "FailureTarget") and not get_condition(
            status, "SuccessCriteriaMet"
        ):
            if int_or(status.get("failed"), 0) > int_or(spec.get("backoffLimit"), 6):
                js.add_condition(status, "FailureTarget", *js.BACKOFF)
            elif left is not None and left <= 0 and status.get("startTime"):
                js.add_condition(status, "FailureTarget", *js.DEADLINE)
            elif js.succeeded(job, status, active):
                js.add_condition(status, "SuccessCriteriaMet", *js.COMPLETED)
        waits: list[float] = []
        if get_condition(status, "FailureTarget") or get_condition(status, "SuccessCriteriaMet"):
            failing = get_condition(status, "FailureTarget") is not None
            for pod in active:
                self._delete(job, pod, status, count_failed=failing)
            if not any(podstate.is_terminating(p) for p in self.client.owned_by(job, "", "pods")):
                self._finish(job, status)
        elif spec.get("suspend"):
            for pod in active:
                self._delete(job, pod, status, count_failed=False)
            js.add_condition(status, "Suspended", "JobSuspended", "Job suspended")
        else:
            js.resume(status)
            waits = [w for w in (self._manage(job, status, active), left) if w is not None]
        self._write(job, status)
        return min(waits) + 0.05 if waits else None

    def _expire(self, job: Obj, status: Obj) -> float | None:
        self._counted.pop(job["metadata"]["uid"], None)
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if not isinstance(ttl, int):
            return None
        ended = status.get("completionTime") or (get_condition(status, "Failed") or {}).get(
            "lastTransitionTime"
        )
        left = ttl - seconds_since(ended)
        if left > 0:
            return left + 0.05
        self.client.delete(job, policy="Foreground")
        return None

    def _manage(self, job: Obj, status: Obj, active: list[Obj]) -> float | None:
        """Create or delete pods towards parallelism; seconds left of a failure backoff."""
        spec = job.get("spec") or {}
        parallelism = int_or(spec.get("parallelism"), 1)
        succeeded = int_or(status.get("succeeded"), 0)
        if spec.get("completionMode") == "Indexed":
            done = jp.parse_indexes(status.get("completedIndexes"))
            running = {jp.index_of(p) for p in active}
            todo = [i for i in range(int_or(spec.get("completions"), 1)) if i not in done | running]
            missing: list[int | None] = list(todo[: max(parallelism - len(active), 0)])
        else:
            completions = spec.get("completions")
            wanted = (
                parallelism
                if completions is None
                else min(parallelism, int_or(completions, 1) - succeeded)
            )
            if completions is None and succeeded > 0:
                wanted = 0
            for pod in sorted(active, key=deletion_order)[: max(len(active) - wanted, 0)]:
                self._delete(job, pod, status, count_failed=False)
            missing = [None] * max(wanted - len(active), 0)
        failures = int_or(status.get("failed"), 0)
        last = self._last_failure.get(job["metadata"]["uid"])
        if missing and failures and last is not None:
            backoff = min(POD_FAILURE_BACKOFF * 2.0 ** (failures - 1), MAX_BACKOFF)
            left: float = last + backoff - time.monotonic()
            if left > 0:
                return left
        for index in missing:
            pod = self.client.create(jp.new_job_pod(job, index))
            self.client.event(job, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")
        return None

    def _delete(self, job: Obj, pod: Obj, status: Obj, *, count_failed: bool) -> None:
        self.client.delete(pod)
        self.client.event(job, "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}")
        self._counted.setdefault(job["metadata"]["uid"], set()).add(pod["metadata"]["uid"])
        if count_failed:
            status["failed"] = int_or(status.get("failed"), 0) + 1

    def _finish(self, job: Obj, status: Obj) -> None:
        target = get_condition(status, "FailureTarget")
        if target is not None:
            js.add_condition(status, "Failed", target["reason"], target["message"])
            self.client.event(job, target["reason"], target["message"], warning=True)
            return
        js.add_condition(status, "Complete", *js.COMPLETED)
        status["completionTime"] = now()
        self.client.event(job, "Completed", "Job completed")

    def _write(self, job: Obj, status: Obj) -> None:
        status = js.with_counts(status, self.client.owned_by(job, "", "pods"))
        if status != (job.get("status") or {}):
            self.client.update({**job, "status": status}, status=True)
