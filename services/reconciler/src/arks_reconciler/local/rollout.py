"""Which replicas to start and stop to move one role towards its desired count and template.

A pure function, so the rules are easy to test and reason about:

- scaling never restarts a replica: extra up-to-date replicas are stopped (unready and
  newest first), missing ones are started all at once;
- a template change rolls out with one surge replica and no loss of capacity: a new
  replica starts, and an out-of-date one stops only once the ready replicas exceed the
  desired count; out-of-date replicas that are not ready anyway stop at once;
- a new template that never becomes ready (a bad argument) therefore never takes the old
  replicas down: the rollout stalls with the old ones serving, and the failing replica's
  message says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ReplicaView:
    name: str
    updated: bool
    ready: bool
    created: float
    """Creation order (larger is newer)."""


@dataclass(frozen=True)
class RolloutStep:
    start: int
    stop: tuple[str, ...]


def plan_rollout(desired: int, replicas: Sequence[ReplicaView]) -> RolloutStep:
    desired = max(desired, 0)
    updated = [r for r in replicas if r.updated]
    old = [r for r in replicas if not r.updated]
    stop: list[ReplicaView] = []
    if len(updated) > desired:
        extra = sorted(updated, key=lambda r: (r.ready, -r.created))[: len(updated) - desired]
        stop += extra
        updated = [r for r in updated if r not in extra]
    stop += [r for r in old if not r.ready]
    old_ready = sorted((r for r in old if r.ready), key=lambda r: r.created)
    ready_updated = sum(1 for r in updated if r.ready)
    excess = ready_updated + len(old_ready) - desired
    if excess > 0:
        stop += old_ready[:excess]
        old_ready = old_ready[excess:]
    need = desired - len(updated)
    start = 0
    if need > 0:
        if old_ready:
            start = max(0, min(need, desired + 1 - len(updated) - len(old_ready)))
        else:
            start = need
    return RolloutStep(start=start, stop=tuple(r.name for r in stop))
