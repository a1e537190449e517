"""Kubernetes Events: `EventRecorder` with the real kubernetes-asyncio client against the
dev cluster's API server, and the real kubectl describing the object."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from arks_common.kubeapi import KubeApi
from arks_common.testing.builders import make_application
from arks_devcluster import FakeKubeApi, serve
from arks_devcluster.testing import Kubectl
from arks_reconciler.kube.recording import EventRecorder

NS = "default"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture
async def kube() -> AsyncIterator[tuple[FakeKubeApi, str, client.ApiClient]]:
    async with serve() as (api, url), client.ApiClient(client.Configuration(host=url)) as c:
        yield api, url, c


@contextlib.asynccontextmanager
async def recording(recorder: EventRecorder) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(recorder.run(stop), name="event-recorder")
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def events(api: FakeKubeApi) -> list[dict[str, Any]]:
    return api.store.items(api.registry.resource("", "events"), NS)


async def eventually(check: Callable[[], bool], what: str = "") -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 5, 12, 0, 0, 250_000, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_an_event_is_written_as_kubectl_describe_shows_it(kube, tmp_path: Path):
    api, url, c = kube
    app = api.create(make_application("app-qwen"))
    recorder = EventRecorder(KubeApi(c), host="node-1")
    async with recording(recorder):
        recorder.record(app, "Warning", "ModelNotReady", "model qwen-7b is not ready yet")
        await eventually(lambda: len(events(api)) == 1, "the event written")
    (event,) = events(api)
    meta = app["metadata"]
    assert re.fullmatch(r"app-qwen\.[0-9a-f]{16}", event["metadata"]["name"])
    assert event["metadata"]["namespace"] == NS
    assert event["involvedObject"] == {
        "apiVersion": "arks.ai/v1",
        "kind": "ArksApplication",
        "name": "app-qwen",
        "namespace": NS,
        "uid": meta["uid"],
        "resourceVersion": meta["resourceVersion"],
    }
    assert event["type"] == "Warning"
    assert event["reason"] == "ModelNotReady"
    assert event["message"] == "model qwen-7b is not ready yet"
    assert event["source"] == {"component": "arks-reconciler", "host": "node-1"}
    assert event["reportingComponent"] == "arks-reconciler"
    assert event["reportingInstance"] == "node-1"
    assert event["count"] == 1
    assert STAMP.match(event["firstTimestamp"])
    assert event["lastTimestamp"] == event["firstTimestamp"]

    kubectl = Kubectl.for_server(tmp_path, url, "any-token")
    described = await kubectl.check("describe", "arksapplication", "app-qwen", "-n", NS)
    listed = described.out.split("\nEvents:", 1)[1]
    (line,) = [line for line in listed.splitlines() if "ModelNotReady" in line]
    assert line.split()[0] == "Warning"
    assert "arks-reconciler" in line
    assert line.endswith("model qwen-7b is not ready yet")


async def test_repeats_aggregate_into_one_event_with_a_count(kube):
    api, _, c = kube
    app = api.create(make_application("app-qwen"))
    clock = Clock()
    recorder = EventRecorder(KubeApi(c), clock=clock)
    async with recording(recorder):
        for _ in range(3):
            recorder.record(app, "Normal", "Scaled", "replicas 1 -> 2")
            clock.now += timedelta(seconds=30)
        recorder.record(app, "Normal", "Scaled", "replicas 2 -> 3")  # another message
        await eventually(lambda: len(events(api)) == 2, "two events")
        await eventually(
            lambda: any(e.get("count") == 3 for e in events(api)), "the repeats counted"
        )
        (repeated,) = [e for e in events(api) if e["message"] == "replicas 1 -> 2"]
        assert repeated["count"] == 3
        assert repeated["firstTimestamp"] == "2026-12-05T12:00:00Z"
        assert repeated["lastTimestamp"] == "2026-12-05T12:01:00Z"
        patches = [r for r in api.requests if r[0] == "PATCH"]
        assert len(patches) == 2
        assert patches[0][1] == f"/api/v1/namespaces/{NS}/events/{repeated['metadata']['name']}"

        clock.now += timedelta(minutes=11)  # past the window: a new Event
        recorder.record(app, "Normal", "Scaled", "replicas 1 -> 2")
        await eventually(lambda: len(events(api)) == 3, "a new event after ten minutes")


async def test_a_full_queue_drops_instead_of_blocking(kube, caplog):
    api, _, c = kube
    app = api.create(make_application("app-qwen"))
    recorder = EventRecorder(KubeApi(c), queue_size=2)
    with caplog.at_level(logging.WARNING, logger="arks_reconciler.kube.recording"):
        for index in range(5):  # not running: nothing is sent
            recorder.record(app, "Normal", "Step", f"step {index}")
    assert recorder.dropped == 3
    full = [r for r in caplog.records if "queue full" in r.getMessage()]
    assert len(full) == 1, "logged once per burst"
    async with recording(recorder):
        await eventually(lambda: len(events(api)) == 2, "the queued events written")
    assert sorted(e["message"] for e in events(api)) == ["step 0", "step 1"]


async def test_failures_are_dropped_and_a_refusal_names_the_rbac_once(kube, caplog):
    api, _, c = kube
    app = api.create(make_application("app-qwen"))
    recorder = EventRecorder(KubeApi(c))
    with caplog.at_level(logging.INFO, logger="arks_reconciler.kube.recording"):
        async with recording(recorder):
            api.fail_next(403, count=3, method="POST")
            for index in range(3):
                recorder.record(app, "Normal", "Refused", f"refused {index}")
            api.fail_next(503, method="POST")
            recorder.record(app, "Normal", "Unavailable", "the API is busy")
            recorder.record(app, "Normal", "Written", "this one gets through")
            await eventually(lambda: recorder.failed == 4, "the failed writes counted")
            await eventually(lambda: len(events(api)) == 1, "the event after the failures")
    assert [e["reason"] for e in events(api)] == ["Written"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "create and patch on events" in errors[0]
    assert any("503" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


async def test_long_messages_are_truncated_and_queued_events_flushed_at_stop(kube):
    api, _, c = kube
    app = api.create(make_application("app-qwen"))
    recorder = EventRecorder(KubeApi(c))
    recorder.record(app, "Warning", "Long", "x" * 5000)
    stop = asyncio.Event()
    stop.set()  # stopped before it ran: what is queued is still written
    await asyncio.wait_for(recorder.run(stop), 10)
    (event,) = events(api)
    assert len(event["message"]) == 1024
