"""Helpers for tests that run pods: a kubelet for the length of a block, a fast config,
pod manifests and waiting for a condition.

    async with running_kubelet(api, fast_config(), tmp_path) as kubelet:
        api.create(pod("web", image="python", args=["-c", "print('hi')"]))
        await eventually(lambda: phase(api, "web") == "Succeeded")

`fast_config()` is the default config with the back-offs scaled down (`backoff_scale`
0.01), a short probe period cap and grace period, and an image `python` whose entrypoint
is this Python (`args: ["-c", ...]` runs a script). Nothing here imports pytest.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arks_devcluster.kubelet.config import ClusterConfig, ImageRule, default_config
from arks_devcluster.kubelet.kubelet import Kubelet

if TYPE_CHECKING:
    from arks_devcluster.api import FakeKubeApi

Obj = dict[str, Any]
PYTHON_IMAGE = ImageRule("python", command=(sys.executable,))


def fast_config(**changes: Any) -> ClusterConfig:
    config = default_config()
    fast = dataclasses.replace(
        config,
        images=(PYTHON_IMAGE, *config.images),
        backoff_scale=0.01,
        probe_period_cap=0.2,
        grace_period_cap=2.0,
    )
    return dataclasses.replace(fast, **changes)


@contextlib.asynccontextmanager
async def running_kubelet(
    api: FakeKubeApi, config: ClusterConfig, workdir: Path
) -> AsyncIterator[Kubelet]:
    """A kubelet on `api` until the block ends; leaving it stops every pod's process."""
    kubelet = Kubelet(api, config, workdir)
    task = asyncio.create_task(kubelet.run(), name="test-kubelet")
    try:
        await asyncio.wait_for(kubelet.registered(), 10)
        yield kubelet
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def pod(name: str, *, image: str = "python", namespace: str = "default", **container: Any) -> Obj:
    """A one-container pod; `container` adds fields (`args`, `env`, `readinessProbe`...);
    `spec` (a dict) adds fields to the pod's spec."""
    spec = container.pop("spec", {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "main", "image": image, **container}], **spec},
    }


def current(api: FakeKubeApi, name: str, namespace: str = "default") -> Obj:
    found = api.get("v1", "pods", namespace, name)
    assert found is not None, f"pod {namespace}/{name} is gone"
    return found


def phase(api: FakeKubeApi, name: str, namespace: str = "default") -> str | None:
    found = api.get("v1", "pods", namespace, name)
    return None if found is None else (found.get("status") or {}).get("phase")


def condition(api: FakeKubeApi, name: str, kind: str, namespace: str = "default") -> Obj:
    status = current(api, name, namespace).get("status") or {}
    for item in status.get("conditions") or []:
        if item["type"] == kind:
            return dict(item)
    return {}


def container_status(api: FakeKubeApi, name: str, namespace: str = "default") -> Obj:
    statuses = (current(api, name, namespace).get("status") or {}).get("containerStatuses")
    return dict(statuses[0]) if statuses else {}


def events(api: FakeKubeApi, name: str, namespace: str = "default") -> list[Obj]:
    rtype = api.registry.resource("", "events")
    return [e for e in api.store.items(rtype, namespace) if e["involvedObject"].get("name") == name]


async def eventually(
    check: Callable[[], Any | Awaitable[Any]], what: str = "the condition", within: float = 20.0
) -> Any:
    """Poll `check` until it returns something true; its value."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
