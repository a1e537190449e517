"""A Deployment's status as the deployment controller computes it (sync.go, progress.go).

Counts come from the ReplicaSets' own statuses: replicas (pods of every ReplicaSet),
updatedReplicas (the new one's), readyReplicas, availableReplicas, unavailableReplicas
(desired minus available). Conditions:

- `Available`: True `MinimumReplicasAvailable` when at least replicas - maxUnavailable
  are available, else False `MinimumReplicasUnavailable`;
- `Progressing`: True `NewReplicaSetCreated` when the new ReplicaSet is made,
  `ReplicaSetUpdated` while the rollout moves, `NewReplicaSetAvailable` once complete;
  False `ProgressDeadlineExceeded` after progressDeadlineSeconds without progress
  (the loop looks again when the deadline passes); Unknown `DeploymentPaused` /
  `DeploymentResumed` around a pause.

The status is written only when it changed, so a pass that moves nothing writes nothing.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from arks_devcluster.controllers import rollout
from arks_devcluster.controllers.util import (
    get_condition,
    int_or,
    omit_zero,
    remove_condition,
    set_condition,
)
from arks_devcluster.local_client import LocalClient

Obj = dict[str, Any]
PROGRESSING = "Progressing"


class DeploymentStatus:
    def __init__(self, client: LocalClient, d: Obj) -> None:
        self.client = client
        self.d = d
        """The Deployment, kept current by the controller's writes to it."""
        self.before: Obj = copy.deepcopy(d.get("status") or {})
        self.pending: Obj = copy.deepcopy(self.before)
        self._pause_conditions()

    def collision_count(self) -> int | None:
        value = self.pending.get("collisionCount")
        return value if isinstance(value, int) else None

    def collided(self) -> None:
        """A name clash: count it and write at once, so the next try hashes differently."""
        self.pending["collisionCount"] = (self.collision_count() or 0) + 1
        self.d.update(self.client.update({**self.d, "status": self.pending}, status=True))

    def created(self, rs_name: str) -> None:
        set_condition(
            self.pending,
            PROGRESSING,
            "True",
            "NewReplicaSetCreated",
            f'Created new replica set "{rs_name}"',
        )

    def _pause_conditions(self) -> None:
        current = get_condition(self.pending, PROGRESSING)
        if current and current.get("reason") == "ProgressDeadlineExceeded":
            return
        paused = current is not None and current.get("reason") == "DeploymentPaused"
        if (self.d.get("spec") or {}).get("paused") and not paused:
            set_condition(
                self.pending, PROGRESSING, "Unknown", "DeploymentPaused", "Deployment is paused"
            )
        elif not (self.d.get("spec") or {}).get("paused") and paused:
            set_condition(
                self.pending, PROGRESSING, "Unknown", "DeploymentResumed", "Deployment is resumed"
            )

    def calculate(self, new_rs: Obj | None, all_rs: list[Obj]) -> Obj:
        """calculateStatus: the counts and the Available condition."""
        d = self.d
        available = sum(rollout.counted(rs, "availableReplicas") for rs in all_rs)
        status = copy.deepcopy(self.pending)
        status.update(
            observedGeneration=d["metadata"].get("generation", 1),
            replicas=sum(rollout.counted(rs, "replicas") for rs in all_rs),
            updatedReplicas=rollout.counted(new_rs, "replicas") if new_rs else 0,
            readyReplicas=sum(rollout.counted(rs, "readyReplicas") for rs in all_rs),
            availableReplicas=available,
            unavailableReplicas=max(rollout.replicas(d) - available, 0),
        )
        if available >= rollout.replicas(d) - rollout.max_unavailable(d):
            set_condition(
                status,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )
        else:
            set_condition(
                status,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        return status

    def write(
        self, new_rs: Obj | None, all_rs: list[Obj], *, rollout_step: bool = True
    ) -> float | None:
        """Write the status if it changed; the seconds until the progress deadline."""
        status = self.calculate(new_rs, all_rs)
        again = self._progress(status, new_rs) if rollout_step and new_rs else None
        status = omit_zero(
            status,
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
        )
        if status != (self.d.get("status") or {}):
            self.d.update(self.client.update({**self.d, "status": status}, status=True))
        return again

    def _progress(self, status: Obj, new_rs: Obj) -> float | None:
        """syncRolloutStatus: the Progressing condition."""
        name = new_rs["metadata"]["name"]
        current = get_condition(status, PROGRESSING)
        settled = current is not None and current.get("reason") == "NewReplicaSetAvailable"
        if settled and int_or(status.get("replicas"), 0) == int_or(
            status.get("updatedReplicas"), 0
        ):
            return None
        if rollout.complete(self.d, status):
            set_condition(
                status,
                PROGRESSING,
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{name}" has successfully progressed.',
            )
            return None
        if rollout.progressing(self.before, status):
            remove_condition(status, PROGRESSING)
            set_condition(
                status,
                PROGRESSING,
                "True",
                "ReplicaSetUpdated",
                f'ReplicaSet "{name}" is progressing.',
            )
            if current is not None and current.get("status") == "True":
                for condition in status["conditions"]:
                    if condition["type"] == PROGRESSING:
                        condition["lastTransitionTime"] = current["lastTransitionTime"]
            return float(rollout.progress_deadline(self.d)) + 0.5
        left = rollout.deadline_left(self.d, current, time.time())
        if left is not None and left <= 0:
            set_condition(
                status,
                PROGRESSING,
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{name}" has timed out progressing.',
            )
            return None
        if current is not None and current.get("reason") == "ProgressDeadlineExceeded":
            return None
        return left + 0.5 if left is not None else None
