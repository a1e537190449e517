"""`default-scheduler`: binds pods without a node to a node that fits them.

Pods of `spec.schedulerName` default-scheduler (or none), not being deleted and not
finished, are taken by priority then age. A pod is bound to the fitting node that keeps
the most cpu and memory free (least allocated: pods spread), by setting `spec.nodeName`
and the `PodScheduled=True` condition, with a `Scheduled` event "Successfully assigned
<ns>/<pod> to <node>". A pod that fits nowhere gets `PodScheduled=False` reason
Unschedulable and a `FailedScheduling` Warning with upstream's message ("0/1 nodes are
available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are available: 1 No
preemption victims found for incoming pod."); it is tried again when the cluster changes
in a way that could make room (a node added or changed, a pod deleted or finished, a
claim created) or its own spec changes, and every five minutes, as upstream's queue
does. Nothing is preempted. Finished pods use nothing, as in the scheduler's cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from fractions import Fraction
from typing import Any

from arks_devcluster.errors import ApiError
from arks_devcluster.kubelet.fit import least_allocated, misfit, score_requests
from arks_devcluster.kubelet.quantities import pod_requests
from arks_devcluster.local_client import LocalClient
from arks_devcluster.store import Event, now

log = logging.getLogger(__name__)
Obj = dict[str, Any]
NAME = "default-scheduler"
RETRY_UNSCHEDULABLE = 300.0
_VICTIMS = "No preemption victims found for incoming pod"
_UNHELPFUL = "Preemption is not helpful for scheduling"


def _terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _histogram(counts: dict[str, int]) -> str:
    return ", ".join(sorted(f"{n} {reason}" for reason, n in counts.items()))


class Scheduler:
    def __init__(self, client: LocalClient) -> None:
        self.client = client
        self._epoch = 0
        self._failed: dict[str, tuple[int, int]] = {}
        """uid → (cluster epoch, pod generation) of its last failed attempt."""

    async def run(self) -> None:
        with self.client.subscribe(
            ("", "pods"), ("", "nodes"), ("", "persistentvolumeclaims")
        ) as changes:
            while True:
                try:
                    self.schedule_pending()
                except Exception:  # a pass that fails must not stop the scheduler
                    log.exception("scheduling pass failed")
                try:
                    batch = [await asyncio.wait_for(changes.get(), RETRY_UNSCHEDULABLE)]
                except TimeoutError:
                    self._epoch += 1
                    continue
                while not changes.empty():
                    batch.append(changes.get_nowait())
                if any(self._makes_room(event) for event in batch):
                    self._epoch += 1

    @staticmethod
    def _makes_room(event: Event) -> bool:
        plural = event.rtype.plural
        if plural in ("nodes", "persistentvolumeclaims"):
            return event.type != "DELETED" or plural == "nodes"
        bound = bool((event.obj.get("spec") or {}).get("nodeName"))
        return bound and (event.type == "DELETED" or _terminal(event.obj))

    def _wanted(self, pod: Obj) -> bool:
        spec = pod.get("spec") or {}
        return (
            not spec.get("nodeName")
            and (spec.get("schedulerName") or NAME) == NAME
            and not pod["metadata"].get("deletionTimestamp")
            and not _terminal(pod)
        )

    def schedule_pending(self) -> None:
        pods = self.client.stored("", "pods")  # read only; the pod bound is a copy
        live = {p["metadata"]["uid"] for p in pods}
        self._failed = {uid: v for uid, v in self._failed.items() if uid in live}
        pending = [p for p in pods if self._wanted(p)]
        pending.sort(
            key=lambda p: (
                -int((p.get("spec") or {}).get("priority") or 0),
                p["metadata"].get("creationTimestamp") or "",
                p["metadata"]["name"],
            )
        )
        for pod in pending:
            meta = pod["metadata"]
            attempt = (self._epoch, int(meta.get("generation") or 1))
            if self._failed.get(meta["uid"]) == attempt:
                continue
            try:
                self._schedule(copy.deepcopy(pod), pods, attempt)
            except ApiError as exc:  # the pod changed or went meanwhile: the next pass sees it
                log.debug("scheduling %s/%s: %s", meta.get("namespace"), meta["name"], exc)
            pods = self.client.stored("", "pods")

    def _usage(
        self, pods: list[Obj]
    ) -> dict[str, tuple[dict[str, Fraction], dict[str, Fraction], int]]:
        """node → (requests used, requests used for scoring, pod count)."""
        usage: dict[str, tuple[dict[str, Fraction], dict[str, Fraction], int]] = {}
        for pod in pods:
            node = (pod.get("spec") or {}).get("nodeName")
            if not node or _terminal(pod):
                continue
            used, scored, count = usage.setdefault(node, ({}, {}, 0))
            for name, amount in pod_requests(pod).items():
                used[name] = used.get(name, Fraction(0)) + amount
            for name, amount in score_requests(pod).items():
                scored[name] = scored.get(name, Fraction(0)) + amount
            usage[node] = (used, scored, count + 1)
        return usage

    def _missing_claim(self, pod: Obj) -> str | None:
        namespace = pod["metadata"]["namespace"]
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and self.client.get("", "persistentvolumeclaims", namespace, claim) is None:
                return f'persistentvolumeclaim "{claim}" not found'
        return None

    def _schedule(self, pod: Obj, pods: list[Obj], attempt: tuple[int, int]) -> None:
        nodes = self.client.list("", "nodes")
        usage = self._usage(pods)
        missing = self._missing_claim(pod)
        if not nodes:
            self._unschedulable(pod, "no nodes available to schedule pods", attempt)
            return
        if missing is not None:
            total = len(nodes)
            message = f"0/{total} nodes are available: {missing}."
            message += f" preemption: 0/{total} nodes are available: {total} {_UNHELPFUL}."
            self._unschedulable(pod, message, attempt)
            return
        reasons: dict[str, int] = {}
        preemption: dict[str, int] = {}
        fitting: list[tuple[float, int, str]] = []
        for node in nodes:
            name = node["metadata"]["name"]
            used, scored, count = usage.get(name, ({}, {}, 0))
            found = misfit(pod, node, used, count)
            if found is None:
                fitting.append((-least_allocated(node, scored, pod), count, name))
                continue
            for reason in found.reasons:
                reasons[reason] = reasons.get(reason, 0) + 1
            why = _VICTIMS if found.resolvable else _UNHELPFUL
            preemption[why] = preemption.get(why, 0) + 1
        if not fitting:
            total = len(nodes)
            message = f"0/{total} nodes are available: {_histogram(reasons)}."
            message += f" preemption: 0/{total} nodes are available: {_histogram(preemption)}."
            self._unschedulable(pod, message, attempt)
            return
        self._bind(pod, min(fitting)[2])

    def _bind(self, pod: Obj, node: str) -> None:
        meta = pod["metadata"]
        pod["spec"]["nodeName"] = node
        bound = self.client.update(pod)
        self._set_condition(bound, {"type": "PodScheduled", "status": "True"})
        self._failed.pop(meta["uid"], None)
        self.client.event(
            bound,
            "Scheduled",
            f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}",
        )

    def _unschedulable(self, pod: Obj, message: str, attempt: tuple[int, int]) -> None:
        self._failed[pod["metadata"]["uid"]] = attempt
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
        }
        self._set_condition(pod, condition)
        self.client.event(pod, "FailedScheduling", message, warning=True)

    def _set_condition(self, pod: Obj, condition: Obj) -> None:
        status = pod.setdefault("status", {})
        status.setdefault("phase", "Pending")
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        old = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), None
        )
        stamp = now()
        if old is not None and old.get("status") == condition["status"]:
            stamp = old.get("lastTransitionTime") or stamp
        conditions.append({**condition, "lastProbeTime": None, "lastTransitionTime": stamp})
        status["conditions"] = conditions
        with contextlib.suppress(ApiError):
            self.client.update(pod, status=True)
