"""A LeaderWorkerSet's rolling update and status (kubernetes-sigs/lws
leaderworkerset_controller.go), as pure functions of the set, its leader StatefulSet,
its leader pods and its worker StatefulSets.

A group is ready when its leader pod is Running and Ready and its worker StatefulSet has
every replica available at one revision; updated when both carry the set's template
revision. The rolling update moves the leader StatefulSet's partition down as groups
from the highest index become ready and updated, within maxUnavailable and maxSurge
(surge groups are added at the top and removed once the update is done). Conditions
`Available` (AllGroupsReady), `Progressing` (GroupsProgressing) and `UpdateInProgress`
(GroupsUpdating) as upstream: only True ones are added, Available turns the others False.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arks_devcluster.controllers import lws_pods as lp
from arks_devcluster.controllers.pods import is_running_and_ready
from arks_devcluster.controllers.util import int_or, scaled_value
from arks_devcluster.store import now

Obj = dict[str, Any]


@dataclass
class Groups:
    """What the set's groups look like now."""

    lws: Obj
    key: str
    leaders: dict[int, Obj]
    workers: dict[str, Obj]

    @property
    def replicas(self) -> int:
        return int_or((self.lws.get("spec") or {}).get("replicas"), 1)

    @property
    def size(self) -> int:
        template = (self.lws.get("spec") or {}).get("leaderWorkerTemplate") or {}
        return int_or(template.get("size"), 1)

    def rolling(self) -> Obj:
        strategy = (self.lws.get("spec") or {}).get("rolloutStrategy") or {}
        return strategy.get("rollingUpdateConfiguration") or {}

    def state(self, index: int) -> tuple[bool, bool]:
        """(ready, updated) of group `index`."""
        leader = self.leaders.get(index)
        if leader is None:
            return False, False
        ready = is_running_and_ready(leader)
        updated = (leader["metadata"].get("labels") or {}).get(lp.REVISION) == self.key
        if self.size > 1:
            workers = self.workers.get(leader["metadata"]["name"])
            if workers is None:
                return False, False
            status = workers.get("status") or {}
            ready = ready and (
                int_or(status.get("availableReplicas"), 0)
                == int_or(workers["spec"].get("replicas"), 1)
                and status.get("currentRevision") == status.get("updateRevision")
            )
            updated = (
                updated and (workers["metadata"].get("labels") or {}).get(lp.REVISION) == self.key
            )
        return ready, updated


def rolling_parameters(groups: Groups, sts: Obj | None, updated: bool) -> tuple[int, int]:
    """rollingUpdateParameters: the leader StatefulSet's (partition, replicas)."""
    config = groups.rolling()
    floor = int_or(config.get("partition"), 0)
    wanted = groups.replicas
    if sts is None:
        return max(0, floor), wanted
    sts_replicas = int_or(sts["spec"].get("replicas"), 1)
    surge = min(scaled_value(config.get("maxSurge", 0), wanted, round_up=True), wanted)
    unavailable = scaled_value(config.get("maxUnavailable", 1), wanted, round_up=False)
    burst = wanted + surge

    def want(unready: int) -> int:
        return wanted + max(unready - unavailable, 0) if unready <= surge else burst

    if updated:
        partition = min(wanted, sts_replicas)
        return max(partition, floor), wanted if sts_replicas < wanted else want(wanted)
    partition = int_or(
        ((sts["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition"), 0
    )
    if (partition == 0 and sts_replicas == wanted) or sts_replicas < wanted:
        return max(partition, floor), wanted
    states = [groups.state(i) for i in range(sts_replicas)]
    unready = sum(1 for i in range(wanted) if i >= len(states) or states[i] != (True, True))
    original = int_or(
        int((sts["metadata"].get("annotations") or {}).get(lp.REPLICAS, wanted)), wanted
    )
    if original != wanted:
        return max(min(partition, burst), floor), want(unready)
    step = unavailable + surge - (burst - sts_replicas)
    continuous = 0
    for ready, up in reversed(states):
        if not (ready and up):
            break
        continuous += 1
    step_partition = max(sts_replicas - continuous - step, 0)
    target = step_partition + sum(1 for i in range(step_partition) if not states[i][0])
    for i in range(min(target, sts_replicas - 1), step_partition - 1, -1):
        if not states[i][0] or states[i][1]:
            target = i
        else:
            break
    return max(min(target, partition), floor), want(unready)


def conditions(groups: Groups, current: list[Obj]) -> tuple[list[Obj], tuple[str, str] | None]:
    """updateConditions: the new condition list and the Event's (reason, message) to
    record (None: nothing changed)."""
    floor = int_or(groups.rolling().get("partition"), 0)
    generation = groups.lws["metadata"].get("generation", 1)
    in_scope = updated_in_scope = ready_total = ready_updated = 0
    for index in groups.leaders:
        ready, updated = groups.state(index)
        if index < groups.replicas:
            ready_total += int(ready)
            if index >= floor:
                in_scope += 1
                updated_in_scope += int(updated)
                ready_updated += int(ready and updated)
    if updated_in_scope < in_scope:
        wanted = [("UpdateInProgress", "GroupsUpdating", "Rolling Upgrade is in progress")]
        wanted.append(("Progressing", "GroupsProgressing", "Replicas are progressing"))
    elif ready_total == groups.replicas and ready_updated == in_scope:
        wanted = [("Available", "AllGroupsReady", "All replicas are ready")]
    else:
        wanted = [("Progressing", "GroupsProgressing", "Replicas are progressing")]
    exclusive = {
        frozenset({"Available", "Progressing"}),
        frozenset({"Available", "UpdateInProgress"}),
    }
    result = [dict(c) for c in current]
    changed = False
    for kind, reason, message in wanted:
        fresh = {
            "type": kind,
            "status": "True",
            "observedGeneration": generation,
            "lastTransitionTime": now(),
            "reason": reason,
            "message": message,
        }
        found = False
        for i, c in enumerate(result):
            if c["type"] == kind:
                found = True
                if c.get("status") != "True" or c.get("observedGeneration") != generation:
                    result[i], changed = fresh, True
            elif frozenset({c["type"], kind}) in exclusive and c.get("status") == "True":
                c.update(status="False", lastTransitionTime=now(), observedGeneration=generation)
                changed = True
        if not found:
            result.append(fresh)
            changed = True
    for c in result:
        if c.get("observedGeneration") != generation:
            c["observedGeneration"], changed = generation, True
    if not changed:
        return current, None
    _, reason, message = wanted[0]
    total = sum(1 for i in groups.leaders if groups.state(i)[0])
    return result, (
        reason,
        f"{message}, with {total} groups ready of total {groups.replicas} groups",
    )


def ready_and_updated(groups: Groups) -> tuple[int, int]:
    states = [groups.state(i) for i in groups.leaders]
    return sum(1 for r, _ in states if r), sum(1 for _, u in states if u)
