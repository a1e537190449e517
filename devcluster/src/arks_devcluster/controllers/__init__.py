"""The simulated workload controllers of the dev cluster, in the server's event loop.

`run_controllers(api)` runs every controller until cancelled (one asyncio.TaskGroup):

- `deployment`, `deployment_status`, `rollout`: Deployments → ReplicaSets;
- `replicaset`: ReplicaSets → Pods;
- `statefulset`, `statefulset_pods`: StatefulSets → Pods and PersistentVolumeClaims;
- `job`, `job_pods`: Jobs → Pods, and the deletion of finished Jobs after their TTL;
- `pvc`: PersistentVolumeClaims bound at once (no PersistentVolumes);
- `lws`, `lws_pods`, `lws_status`: LeaderWorkerSets, while their CRD is installed;
- `rbg`, `rbg_workloads`, `rbgset`: RoleBasedGroups and RoleBasedGroupSets, likewise.

The built-in ones write as upstream's `kube-controller-manager` field manager and record
Events as `deployment-controller`, `replicaset-controller`, ...; the LWS ones as `lws`, the
RBG ones as `rbg`. `loop` is the shared informer and work queue, `pods` and `util`
shared helpers, `testing` helpers for tests that play the kubelet. Every write goes
through `LocalClient`: admitted, versioned and watched like a client's. See
docs/dev-cluster.md, "Controllers", for what each does and does not do compared with
upstream.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from arks_devcluster.controllers.deployment import DeploymentController
from arks_devcluster.controllers.job import JobController
from arks_devcluster.controllers.loop import Controller
from arks_devcluster.controllers.lws import LeaderWorkerSetController
from arks_devcluster.controllers.pvc import ClaimBinder
from arks_devcluster.controllers.rbg import RoleBasedGroupController
from arks_devcluster.controllers.rbgset import RoleBasedGroupSetController
from arks_devcluster.controllers.replicaset import ReplicaSetController
from arks_devcluster.controllers.statefulset import StatefulSetController

if TYPE_CHECKING:
    from arks_devcluster.api import FakeKubeApi

CONTROLLERS: tuple[type[Controller], ...] = (
    DeploymentController,
    ReplicaSetController,
    StatefulSetController,
    JobController,
    ClaimBinder,
    LeaderWorkerSetController,
    RoleBasedGroupController,
    RoleBasedGroupSetController,
)


async def run_controllers(api: FakeKubeApi) -> None:
    """Run every controller against `api` until cancelled."""
    async with asyncio.TaskGroup() as tasks:
        for controller in CONTROLLERS:
            tasks.create_task(controller(api).run())


__all__ = ["CONTROLLERS", "run_controllers"]
