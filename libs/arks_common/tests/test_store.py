"""The local resource store keeps the Kubernetes semantics the reconciler relies on."""

from __future__ import annotations

import asyncio

import pytest

from arks_common import messaging
from arks_common.resources import ResourceError
from arks_common.store import (
    AlreadyExistsError,
    ConflictError,
    ObjectRef,
    ResourceStore,
    StoreChange,
    StoreSnapshot,
    normalize,
)

QUOTA = {
    "apiVersion": "arks.ai/v1",
    "kind": "ArksQuota",
    "metadata": {"name": "basic-quota", "namespace": "default"},
    "spec": {"quotas": [{"type": "total", "value": 100}]},
}


async def test_create_sets_server_fields_and_get_reads_them(bus: messaging.Bus) -> None:
    store = ResourceStore(bus)
    created = await store.create(QUOTA)
    meta = created["metadata"]
    assert meta["generation"] == 1
    assert meta["uid"]
    assert meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) > 0
    assert await store.get("ArksQuota", "default", "basic-quota") == created
    with pytest.raises(AlreadyExistsError):
        await store.create(QUOTA)


async def test_invalid_objects_are_refused_with_the_field_named(bus: messaging.Bus) -> None:
    store = ResourceStore(bus)
    bad = {**QUOTA, "spec": {"quotas": [{"type": "tokens", "value": 1}]}}
    with pytest.raises(ResourceError, match=r"spec\.quotas\[0\]\.type"):
        await store.create(bad)


async def test_apply_bumps_generation_only_on_spec_change_and_keeps_status(
    bus: messaging.Bus,
) -> None:
    store = ResourceStore(bus)
    _, verdict = await store.apply(QUOTA)
    assert verdict == "created"
    await store.update_status(
        "ArksQuota", "default", "basic-quota", lambda s: {**s, "quotaStatus": []}
    )
    same, verdict = await store.apply(QUOTA)
    assert verdict == "unchanged"
    assert same["metadata"]["generation"] == 1
    labelled = {**QUOTA, "metadata": {**QUOTA["metadata"], "labels": {"team": "a"}}}
    obj, verdict = await store.apply(labelled)
    assert (verdict, obj["metadata"]["generation"]) == ("configured", 1)
    changed = {**labelled, "spec": {"quotas": [{"type": "total", "value": 200}]}}
    obj, verdict = await store.apply(changed)
    assert (verdict, obj["metadata"]["generation"]) == ("configured", 2)
    assert obj["status"] == {"quotaStatus": []}


async def test_replace_with_a_stale_version_conflicts(bus: messaging.Bus) -> None:
    store = ResourceStore(bus)
    first = await store.create(QUOTA)
    await store.update_status("ArksQuota", "default", "basic-quota", lambda s: {"x": 1})
    with pytest.raises(ConflictError):
        await store.replace(first)


async def test_concurrent_status_updates_all_land(bus: messaging.Bus) -> None:
    store = ResourceStore(bus)
    await store.create(QUOTA)

    async def bump(_: int) -> None:
        await store.update_status(
            "ArksQuota", "default", "basic-quota", lambda s: {"n": s.get("n", 0) + 1}
        )

    await asyncio.gather(*(bump(i) for i in range(10)))
    obj = await store.get("ArksQuota", "default", "basic-quota")
    assert obj is not None
    assert obj["status"] == {"n": 10}


async def test_finalizers_defer_deletion(bus: messaging.Bus) -> None:
    store = ResourceStore(bus)
    await store.create(QUOTA)
    await store.set_finalizers("ArksQuota", "default", "basic-quota", ["arks.ai/test"])
    assert await store.delete("ArksQuota", "default", "basic-quota")
    marked = await store.get("ArksQuota", "default", "basic-quota")
    assert marked is not None
    assert marked["metadata"]["deletionTimestamp"]
    await store.set_finalizers("ArksQuota", "default", "basic-quota", [])
    assert await store.get("ArksQuota", "default", "basic-quota") is None
    assert not await store.delete("ArksQuota", "default", "basic-quota")


async def test_a_purge_at_a_stale_version_is_a_conflict_not_an_error(
    bus: messaging.Bus,
) -> None:
    # The last finalizer's removal purges with an expected sequence: when the object
    # changed meanwhile, the store reads again (no NATS error reaches its callers).
    store = ResourceStore(bus)
    created = await store.create(QUOTA)
    stale = int(created["metadata"]["resourceVersion"])
    await store.update_status("ArksQuota", "default", "basic-quota", lambda s: {"n": 1})
    ref = ObjectRef("ArksQuota", "default", "basic-quota")
    assert not await store._delete_at(ref, stale)
    assert await store.get("ArksQuota", "default", "basic-quota") is not None


async def test_list_and_watch(bus: messaging.Bus) -> None:
    store = ResourceStore(bus)
    await store.create(QUOTA)
    other = {**QUOTA, "metadata": {"name": "q2", "namespace": "team-b"}}
    await store.create(other)
    assert [o["metadata"]["name"] for o in await store.list("ArksQuota")] == ["basic-quota", "q2"]
    assert [o["metadata"]["name"] for o in await store.list("ArksQuota", "team-b")] == ["q2"]
    assert await store.list("ArksToken") == []

    stop = asyncio.Event()
    updates = store.watch(["ArksQuota"], stop=stop)
    try:
        snapshot = await anext(updates)
        assert isinstance(snapshot, StoreSnapshot)
        assert snapshot.kinds == {"ArksQuota"}
        assert set(snapshot.objects) == {
            ObjectRef("ArksQuota", "default", "basic-quota"),
            ObjectRef("ArksQuota", "team-b", "q2"),
        }
        await store.delete("ArksQuota", "team-b", "q2")
        change = await anext(updates)
        assert change == StoreChange(ObjectRef("ArksQuota", "team-b", "q2"), None)
    finally:
        stop.set()
        await updates.aclose()


async def test_delete_retries_when_a_status_write_races_it(bus: messaging.Bus) -> None:
    store = ResourceStore(bus)
    await store.create(QUOTA)

    async def write_status(i: int) -> None:
        await store.update_status("ArksQuota", "default", "basic-quota", lambda s: {"i": i})

    results = await asyncio.gather(
        *(write_status(i) for i in range(5)),
        store.delete("ArksQuota", "default", "basic-quota"),
        return_exceptions=True,
    )
    assert not [r for r in results if isinstance(r, BaseException)]
    assert await store.get("ArksQuota", "default", "basic-quota") is None


async def test_builders_make_objects_the_store_accepts(bus: messaging.Bus) -> None:
    from arks_common.testing import builders

    store = ResourceStore(bus)
    for obj in (
        builders.make_model(storage={"localPath": "/models/qwen"}),
        builders.make_application(replicas=2),
        builders.make_endpoint(strategy="leastLoad"),
        builders.make_token(),
        builders.make_quota(),
    ):
        created = await store.create(obj)
        assert created["spec"] == normalize(obj)["spec"]
