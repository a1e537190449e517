"""Test helpers for code that needs workloads to progress without a kubelet: play the
kubelet's part on pods (Running and Ready, Succeeded, Failed) through a `LocalClient`,
run the controllers for the length of a block, and wait for a condition.

    async with running_controllers(api):
        await eventually(lambda: len(pods(api)) == 3)
        for pod in pods(api):
            mark_running(api, pod)

Nothing here imports pytest. A condition not met within the deadline raises
`TimeoutError` with the last value seen.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from arks_devcluster.controllers import run_controllers
from arks_devcluster.local_client import LocalClient
from arks_devcluster.store import now

if TYPE_CHECKING:
    from arks_devcluster.api import FakeKubeApi

Obj = dict[str, Any]
DEADLINE = 20.0


@contextlib.asynccontextmanager
async def running_controllers(api: FakeKubeApi) -> AsyncIterator[None]:
    """Every controller of `arks_devcluster.controllers` for the length of the block."""
    task = asyncio.create_task(run_controllers(api))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def eventually(check: Callable[[], Any], deadline: float = DEADLINE) -> Any:
    """Poll `check` until it returns something truthy (returned); TimeoutError after
    `deadline` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    last: Any = None
    while loop.time() < end:
        last = check()
        if last:
            return last
        await asyncio.sleep(0.01)
    raise TimeoutError(f"condition not met within {deadline}s (last value: {last!r})")


def kubelet(api: FakeKubeApi) -> LocalClient:
    return LocalClient(api, manager="kubelet")


def pods(api: FakeKubeApi, namespace: str = "default", selector: str | None = None) -> list[Obj]:
    """The pods of a namespace that are not being deleted, by name."""
    found = kubelet(api).list("", "pods", namespace, selector)
    return [p for p in found if not p["metadata"].get("deletionTimestamp")]


def _set_status(api: FakeKubeApi, pod: Obj, status: Obj) -> Obj:
    client = kubelet(api)
    meta = pod["metadata"]
    current = client.get("", "pods", meta["namespace"], meta["name"])
    if current is None:
        raise LookupError(f"pod {meta['namespace']}/{meta['name']} is gone")
    if not current["spec"].get("nodeName"):  # the scheduler's binding
        current["spec"]["nodeName"] = "devcluster"
        current = client.update(current)
    return client.update({**current, "status": status}, status=True)


def mark_running(
    api: FakeKubeApi, pod: Obj, *, ready: bool = True, ready_since: str | None = None
) -> Obj:
    """Scheduled, Running, its containers started; Ready when `ready` (the Ready
    condition's lastTransitionTime `ready_since`, default now)."""
    stamp = now()
    flag = "True" if ready else "False"
    containers = (pod.get("spec") or {}).get("containers") or []
    return _set_status(
        api,
        pod,
        {
            "phase": "Running",
            "podIP": "127.0.0.1",
            "startTime": stamp,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
                {"type": "Initialized", "status": "True", "lastTransitionTime": stamp},
                {"type": "ContainersReady", "status": flag, "lastTransitionTime": stamp},
                {"type": "Ready", "status": flag, "lastTransitionTime": ready_since or stamp},
            ],
            "containerStatuses": [
                {"name": c.get("name"), "ready": ready, "restartCount": 0, "started": True}
                for c in containers
            ],
        },
    )


def mark_finished(api: FakeKubeApi, pod: Obj, *, succeeded: bool = True) -> Obj:
    """Succeeded (exit 0) or Failed (exit 1): every container terminated."""
    stamp = now()
    code = 0 if succeeded else 1
    containers = (pod.get("spec") or {}).get("containers") or []
    return _set_status(
        api,
        pod,
        {
            "phase": "Succeeded" if succeeded else "Failed",
            "startTime": stamp,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
                {"type": "Ready", "status": "False", "lastTransitionTime": stamp},
            ],
            "containerStatuses": [
                {
                    "name": c.get("name"),
                    "ready": False,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": code,
                            "reason": "Completed" if succeeded else "Error",
                            "finishedAt": stamp,
                        }
                    },
                }
                for c in containers
            ],
        },
    )
