"""The controllers' reconcile loop: keys from owned objects, retries with backoff, a
failing object never stopping the others, and the controllers started and stopped as
one task."""

from __future__ import annotations

import asyncio

from arks_devcluster import ApiError, FakeKubeApi
from arks_devcluster.controllers import CONTROLLERS, run_controllers
from arks_devcluster.controllers.loop import Controller, WorkQueue
from arks_devcluster.controllers.testing import eventually, kubelet
from arks_devcluster.local_client import controller_ref


class Recorder(Controller):
    """Reconciles ConfigMaps; fails as told, records every call."""

    primary = ("", "configmaps")
    owns = (("", "secrets"),)
    component = "recorder"

    def __init__(self, api: FakeKubeApi) -> None:
        super().__init__(api)
        self.calls: list[str] = []
        self.failures: dict[str, list[Exception]] = {}

    def reconcile(self, namespace: str, name: str) -> float | None:
        self.calls.append(name)
        pending = self.failures.get(name)
        if pending:
            raise pending.pop(0)
        return None


def configmap(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
    }


async def test_errors_are_retried_and_never_stop_the_loop() -> None:
    api = FakeKubeApi()
    controller = Recorder(api)
    controller.failures["bad"] = [
        RuntimeError("boom"),
        ApiError(409, "Conflict", "stale"),
        KeyError("x"),
    ]
    api.create(configmap("bad"))
    async with asyncio.TaskGroup() as tasks:
        task = tasks.create_task(controller.run())
        await eventually(lambda: controller.calls.count("bad") == 4)
        api.create(configmap("good"))
        await eventually(lambda: "good" in controller.calls)
        task.cancel()
    assert controller.calls.count("bad") == 4, "three failures, then the success ends it"


async def test_owned_objects_queue_their_controller_once_per_change() -> None:
    api = FakeKubeApi()
    controller = Recorder(api)
    owner = api.create(configmap("owner"))
    async with asyncio.TaskGroup() as tasks:
        task = tasks.create_task(controller.run())
        await eventually(lambda: controller.calls == ["owner"])
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "s",
                "namespace": "default",
                "ownerReferences": [controller_ref(owner)],
            },
        }
        kubelet(api).create(secret)
        kubelet(api).create({**secret, "metadata": {"name": "orphan", "namespace": "default"}})
        await eventually(lambda: controller.calls == ["owner", "owner"])
        await asyncio.sleep(0.05)
        task.cancel()
    assert controller.calls == ["owner", "owner"], "the orphan queues nothing"


async def test_the_work_queue_merges_keys_and_waits_for_the_earliest() -> None:
    queue = WorkQueue()
    queue.add(("ns", "later"), 0.05)
    queue.add(("ns", "now"))
    queue.add(("ns", "now"))
    assert len(queue) == 2
    assert await queue.get() == ("ns", "now")
    assert await asyncio.wait_for(queue.get(), 5) == ("ns", "later")
    assert queue.retry(("ns", "x")) < queue.retry(("ns", "x")), "the backoff grows"


async def test_run_controllers_runs_each_controller_until_cancelled() -> None:
    api = FakeKubeApi()
    observers = len(api.store.observers)
    task = asyncio.create_task(run_controllers(api))
    await asyncio.sleep(0.05)
    assert not task.done()
    assert len(api.store.observers) == observers + len(CONTROLLERS), "one subscription each"
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert len({c.component for c in CONTROLLERS}) == len(CONTROLLERS)
    assert len(api.store.observers) == observers, "the subscriptions end with the task"
