"""The whole dev cluster in one event loop: the API server's objects, the simulated
workload controllers and the kubelet (with its nodes and scheduler).

`running_workloads(api, config, workdir)` runs the controllers and the kubelet beside an
API for as long as the block lasts; leaving it cancels both, and the kubelet stops every
process it started before the block returns. `cluster_crds()` are the CRDs a dev
cluster serves from the start: the six arks.ai kinds and the bundled LeaderWorkerSet,
RoleBasedGroup and Gateway API schemas (no `../shared` needed at run time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from arks_devcluster.api import FakeKubeApi, arks_crds
from arks_devcluster.bundled_crds import bundled_crds
from arks_devcluster.controllers import run_controllers
from arks_devcluster.kubelet import ClusterConfig, Kubelet

log = logging.getLogger(__name__)
Obj = dict[str, Any]


def cluster_crds() -> list[Obj]:
    return [*arks_crds(), *bundled_crds()]


@contextlib.asynccontextmanager
async def running_workloads(
    api: FakeKubeApi, config: ClusterConfig, workdir: Path
) -> AsyncIterator[Kubelet]:
    """Controllers and kubelet on `api` until the block ends (yields the kubelet)."""
    kubelet = Kubelet(api, config, workdir)
    tasks = [
        asyncio.create_task(run_controllers(api), name="devcluster-controllers"),
        asyncio.create_task(kubelet.run(), name="devcluster-kubelet"),
    ]
    try:
        yield kubelet
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
