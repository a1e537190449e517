"""The local platform end to end: real NATS, the reconciler service, real engine-sim processes."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import nats.js.errors

from arks_common import events, messaging, resources, subjects
from arks_common.store import ResourceStore
from arks_reconciler.local import processes
from arks_reconciler.testing import (
    InProcessReconciler,
    app_obj,
    endpoint_obj,
    eventually,
    model_obj,
    quota_obj,
    replica_records,
    token_obj,
)


async def kv_value(bus: messaging.Bus, bucket: str, key: str) -> bytes | None:
    kv = await bus.kv(bucket)
    try:
        entry = await kv.get(key)
    except Exception:  # the key does not exist (yet)
        return None
    return entry.value or None


async def route_table(bus: messaging.Bus) -> events.RouteTable | None:
    raw = await kv_value(bus, subjects.ROUTES_BUCKET, "default.qwen-7b")
    return events.RouteTable.from_bytes(raw) if raw else None


async def app_status(store: ResourceStore, name: str = "app-qwen") -> dict[str, Any]:
    obj = await store.get("ArksApplication", "default", name)
    return (obj or {}).get("status") or {}


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


async def ready_urls(bus: messaging.Bus, count: int) -> list[str] | None:
    table = await route_table(bus)
    if table is None or len(table.backends) != count:
        return None
    return sorted(b.url for b in table.backends)


async def test_quickstart_scale_crash_delete(
    reconciler: InProcessReconciler, bus: messaging.Bus, store: ResourceStore, data_dir: Path
) -> None:
    for obj in (
        model_obj(),
        app_obj(servedModelName="qwen-7b"),
        endpoint_obj(defaultWeight=5),
        token_obj(),
        quota_obj(prices=[{"endpoint": "qwen-7b", "prompt": "0.5", "completion": "1.5"}]),
    ):
        await store.apply(obj)

    # The model names no source: existing storage, Ready at once.
    async def model_ready() -> dict[str, Any] | None:
        obj = await store.get("ArksModel", "default", "qwen-7b")
        status = (obj or {}).get("status") or {}
        return status if status.get("phase") == "Ready" else None

    model_status = await eventually(model_ready, what="model Ready")
    assert model_status["path"].endswith("models/models/default/qwen-7b")

    async def running() -> dict[str, Any] | None:
        status = await app_status(store)
        return status if status.get("phase") == "Running" else None

    status = await eventually(running, what="application Running")
    assert (status["replicas"], status["readyReplicas"], status["updatedReplicas"]) == (1, 1, 1)
    assert condition(status, "Ready")["status"] == "True"
    assert status["observedGeneration"] == 1
    app = await store.get("ArksApplication", "default", "app-qwen")
    assert app is not None
    assert app["metadata"]["finalizers"] == ["application.arks.ai/controller"]

    # The route table lists the replica, which really serves the model.
    urls = await eventually(lambda: ready_urls(bus, 1), what="one backend")
    table = await route_table(bus)
    assert table is not None
    backend = table.backends[0]
    assert (backend.weight, backend.source, backend.application) == (5, "discovered", "app-qwen")
    assert backend.url.startswith("http://127.0.0.1:")
    async with httpx.AsyncClient(trust_env=False) as client:
        models = (await client.get(f"{urls[0]}/v1/models")).json()
        assert [m["id"] for m in models["data"]] == ["qwen-7b"]

    endpoint = await store.get("ArksEndpoint", "default", "qwen-7b")
    assert endpoint is not None
    assert endpoint["status"]["routes"] == [
        {
            "group": "",
            "kind": "Service",
            "name": "arks-application-app-qwen",
            "port": 8080,
            "weight": 5,
        }
    ]

    # Token grant under sha256 of the token, never the token itself; the quota spec.
    digest = resources.hash_token("sk-test123456")
    raw = await kv_value(bus, subjects.TOKENS_BUCKET, digest)
    assert raw is not None
    assert b"sk-test123456" not in raw
    grant = events.TokenGrant.from_bytes(raw)
    assert grant.grant_for("qwen-7b") is not None
    quota_raw = await kv_value(bus, subjects.QUOTAS_BUCKET, "default.basic-quota")
    assert quota_raw is not None
    quota = events.QuotaSpec.from_bytes(quota_raw)
    assert {limit.type for limit in quota.limits} == {"prompt", "response", "total"}
    assert quota.price_version

    # Engine load snapshots arrive about every scrape interval.
    snapshots: asyncio.Queue[events.EngineLoadSnapshot] = asyncio.Queue()

    async def on_load(msg: Any) -> None:
        snapshots.put_nowait(events.EngineLoadSnapshot.from_bytes(msg.data))

    sub = await bus.nc.subscribe(subjects.load_subject("default", "app-qwen"), cb=on_load)
    try:
        snapshot = await asyncio.wait_for(snapshots.get(), 10)
        while not snapshot.replicas:
            snapshot = await asyncio.wait_for(snapshots.get(), 10)
    finally:
        await sub.unsubscribe()
    assert [r.url for r in snapshot.replicas] == urls
    assert snapshot.replicas[0].ready

    # Scale 1 -> 3: three backends, the first replica untouched.
    await store.apply(app_obj(servedModelName="qwen-7b", replicas=3))
    urls3 = await eventually(lambda: ready_urls(bus, 3), what="three backends")
    assert urls[0] in urls3
    status = await eventually(
        lambda: _with(app_status(store), lambda s: s.get("readyReplicas") == 3), what="3 ready"
    )
    assert status["observedGeneration"] == 2
    records = await replica_records(bus)
    assert len(records) == 3
    async with httpx.AsyncClient(trust_env=False) as client:
        assert (await client.get(f"{reconciler.health_url}/readyz")).status_code == 200
        metrics = (await client.get(f"{reconciler.health_url}/metrics")).text
    assert (
        'arks_reconciler_replicas{kind="ArksApplication",name="app-qwen",namespace="default",'
        'state="Ready"} 3.0' in metrics
    )
    assert 'arks_reconciler_kv_writes_total{bucket="arks-routes"}' in metrics

    # Kill one replica: it leaves the routes, then comes back (same name, restarted).
    victim = records[0]
    os.kill(victim.pid, signal.SIGKILL)
    await eventually(lambda: ready_urls(bus, 2), what="the dead replica out of the routes")
    await eventually(lambda: ready_urls(bus, 3), what="the replica restarted")
    records = await replica_records(bus)
    restarted = next(r for r in records if r.name == victim.name)
    assert restarted.restarts == 1
    assert restarted.pid != victim.pid
    assert len(records) == 3

    # Delete the application: the endpoint drops it, its processes and records are gone.
    pids = [r.pid for r in records]
    await store.delete("ArksApplication", "default", "app-qwen")
    await eventually(
        lambda: _absent(store.get("ArksApplication", "default", "app-qwen")), what="app gone"
    )
    await eventually(lambda: _is_empty(route_table(bus)), what="an empty route table")
    assert await replica_records(bus) == []
    assert processes.find_marked(processes.scope_of(data_dir)) == {}
    for pid in pids:
        assert processes.identify(pid) is None
    endpoint = await store.get("ArksEndpoint", "default", "qwen-7b")
    assert endpoint is not None
    assert not endpoint["status"].get("routes")
    ready = condition(endpoint["status"], "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NoBackends")

    # Deleting the endpoint, token and quota removes their KV entries.
    for kind, name in (
        ("ArksEndpoint", "qwen-7b"),
        ("ArksToken", "example-token"),
        ("ArksQuota", "basic-quota"),
    ):
        await delete_racing_status_writes(store, kind, name)
    await eventually(lambda: _none(route_table(bus)), what="route entry deleted")
    await eventually(
        lambda: _none(kv_value(bus, subjects.TOKENS_BUCKET, digest)), what="grant deleted"
    )
    await eventually(
        lambda: _none(kv_value(bus, subjects.QUOTAS_BUCKET, "default.basic-quota")),
        what="quota spec deleted",
    )


async def delete_racing_status_writes(store: ResourceStore, kind: str, name: str) -> None:
    """`store.delete`, retried on the compare-and-set conflict nats-py reports as a 400.

    arks_common's store catches KeyWrongLastSequenceError around `kv.delete(last=...)`,
    but nats-py raises BadRequestError (err_code 10071) there, so a delete that races the
    reconciler's status write surfaces; reported to the store's owner.
    """
    for _ in range(20):
        try:
            await store.delete(kind, "default", name)
            return
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != 10071:
                raise
            await asyncio.sleep(0.05)
    raise AssertionError(f"could not delete {kind} {name}")


async def _with(awaitable: Any, check: Any) -> Any:
    value = await awaitable
    return value if check(value) else None


async def _absent(awaitable: Any) -> bool:
    return await awaitable is None


async def _is_empty(awaitable: Any) -> bool:
    table = await awaitable
    return table is not None and table.backends == []


async def _none(awaitable: Any) -> bool:
    return await awaitable is None
