"""Informers and the arks.ai objects on Kubernetes, against the dev cluster's API server
(real HTTP, the real kubernetes-asyncio client): paginated lists, watches with
bookmarks, 410 Gone relisting one kind, a missing CRD, status and finalizer writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from arks_common.kubeapi import KubeApi
from arks_common.store import ConflictError, ObjectRef, StoreChange, StoreSnapshot
from arks_common.testing.builders import make_application, make_endpoint, make_model
from arks_devcluster import FakeKubeApi, serve
from arks_reconciler.kube.custom_objects import CustomObjects
from arks_reconciler.kube.informers import Informer
from arks_reconciler.kube.kinds import ARKS, LWS, SERVICE


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[FakeKubeApi, KubeApi]]:
    async with (
        serve() as (api, url),
        client.ApiClient(client.Configuration(host=url)) as api_client,
    ):
        yield api, KubeApi(api_client, timeout=5)


async def _until(check: Any, what: str) -> Any:
    for _ in range(400):
        result = check()
        if result:
            return result
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _service(name: str, **labels: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"ports": [{"port": 8080}]},
    }


async def test_lists_page_by_page_then_watches_changes(cluster) -> None:
    api, kube = cluster
    for i in range(5):
        api.create(_service(f"s{i}", tier="a" if i % 2 else "b"))
    seen: list[tuple[str, str]] = []
    informer = Informer(
        kube, SERVICE, page_size=2, on_event=lambda t, o: seen.append((t, o["metadata"]["name"]))
    )
    stop = asyncio.Event()
    task = asyncio.create_task(informer.run(stop))
    await asyncio.wait_for(informer.synced.wait(), 10)
    assert sorted(n for _, n in informer.objects) == [f"s{i}" for i in range(5)]
    lists = [p for m, p in api.requests if m == "GET" and p.endswith("/services")]
    assert len(lists) >= 3, "5 objects in pages of 2 take 3 requests"
    assert [o["metadata"]["name"] for o in informer.select(tier="a")] == ["s1", "s3"]

    api.create(_service("s9"))
    await _until(lambda: informer.get("default", "s9"), "the watch to bring s9")
    assert ("ADDED", "s9") in seen
    kube_delete = kube.request("DELETE", SERVICE.path("default", "s0"))
    await kube_delete
    await _until(lambda: informer.get("default", "s0") is None, "the watch to drop s0")
    assert ("DELETED", "s0") in seen
    stop.set()
    await task


async def test_caches_are_indexed_by_label_and_by_controller(cluster) -> None:
    api, kube = cluster
    owner = {"apiVersion": "arks.ai/v1", "kind": "ArksApplication", "controller": True}
    for i in range(6):
        service = _service(f"s{i}", app=f"a{i % 2}")
        refs = [{**owner, "name": f"a{i % 3}", "uid": f"uid-{i % 3}"}]
        service["metadata"]["ownerReferences"] = refs
        api.create(service)
    informer = Informer(kube, SERVICE, index_label="app")
    stop = asyncio.Event()
    task = asyncio.create_task(informer.run(stop))
    await asyncio.wait_for(informer.synced.wait(), 10)

    def names(objs: list[dict]) -> list[str]:
        return [o["metadata"]["name"] for o in objs]

    assert names(informer.select("default", app="a1")) == ["s1", "s3", "s5"]
    assert names(informer.select("other", app="a1")) == []
    assert names(informer.select(app="a1")) == ["s1", "s3", "s5"]  # no namespace: a scan
    assert names(informer.controlled_by("ArksApplication", "default", "a0")) == ["s0", "s3"]
    assert names(informer.owned_by("uid-2")) == ["s2", "s5"]
    # A change of label or owner moves the object between index entries.
    moved = api.get("v1", "services", "default", "s1")
    moved["metadata"]["labels"] = {"app": "a0"}
    moved["metadata"]["ownerReferences"] = [{**owner, "name": "a2", "uid": "uid-2"}]
    await kube.request("PUT", SERVICE.path("default", "s1"), body=moved)
    await _until(lambda: "s1" in names(informer.select("default", app="a0")), "the relabel")
    assert names(informer.select("default", app="a1")) == ["s3", "s5"]
    assert names(informer.controlled_by("ArksApplication", "default", "a1")) == ["s4"]
    assert names(informer.controlled_by("ArksApplication", "default", "a2")) == ["s1", "s2", "s5"]
    await kube.request("DELETE", SERVICE.path("default", "s3"))
    await _until(lambda: informer.get("default", "s3") is None, "the delete")
    assert names(informer.select("default", app="a1")) == ["s5"]
    assert names(informer.owned_by("uid-0")) == ["s0"]
    stop.set()
    await task


async def test_a_410_relists_and_reports_what_changed_meanwhile(cluster) -> None:
    api, kube = cluster
    api.create(_service("kept"))
    api.create(_service("removed"))
    seen: list[tuple[str, str]] = []
    informer = Informer(
        kube,
        SERVICE,
        watch_timeout=1,  # re-watch every second, from the last version seen
        on_event=lambda t, o: seen.append((t, o["metadata"]["name"])),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(informer.run(stop))
    await asyncio.wait_for(informer.synced.wait(), 10)
    assert informer.relists == 0
    # The watch breaks (503 twice, with backoff); meanwhile objects change and the
    # history is compacted, so the informer's next watch gets 410 and it lists again,
    # reporting what it missed.
    watches_before = len([m for m, p in api.requests if m == "GET"])
    api.fail_next(503, count=2, method="GET")
    await _until(
        lambda: len([m for m, p in api.requests if m == "GET"]) > watches_before, "a failed watch"
    )
    api.create(_service("late"))
    await kube.request("DELETE", SERVICE.path("default", "removed"))
    api.store.compact()
    await _until(lambda: informer.get("default", "late"), "the new object")
    await _until(lambda: informer.get("default", "removed") is None, "the deletion")
    assert informer.relists >= 1
    assert ("ADDED", "late") in seen
    assert ("DELETED", "removed") in seen
    # An HTTP 410 on the watch request relists too.
    api.fail_next(410, method="GET")
    await _until(lambda: informer.relists >= 2, "a second relist")
    stop.set()
    await task


async def test_a_kind_whose_crd_is_missing_is_unavailable_not_a_crash(cluster) -> None:
    _, kube = cluster
    informer = Informer(kube, LWS, missing_retry=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(informer.run(stop))
    await asyncio.wait_for(informer.synced.wait(), 10)
    assert informer.available is False
    assert informer.objects == {}
    stop.set()
    await task


async def test_custom_objects_snapshot_then_changes_and_writes(cluster) -> None:
    api, kube = cluster
    api.create(make_model())
    api.create(make_application())
    objects = CustomObjects(kube)
    stop = asyncio.Event()
    updates: list = []

    async def consume() -> None:
        async for update in objects.watch(stop=stop):
            updates.append(update)

    task = asyncio.create_task(consume())
    await _until(lambda: updates, "the first snapshot")
    first = updates[0]
    assert isinstance(first, StoreSnapshot)
    assert first.kinds == frozenset(ARKS)
    assert {r.kind for r in first.objects} == {"ArksModel", "ArksApplication"}

    api.create(make_endpoint())
    await _until(
        lambda: any(isinstance(u, StoreChange) and u.ref.kind == "ArksEndpoint" for u in updates),
        "the endpoint's change",
    )
    ref = ObjectRef("ArksApplication", "default", "app-qwen")
    await _until(lambda: objects.cached(ref.kind, ref.namespace, ref.name), "the cache")

    written = await objects.set_finalizers(ref.kind, ref.namespace, ref.name, ["a/b"])
    assert written is not None
    assert written["metadata"]["finalizers"] == ["a/b"]

    def mutate(status: dict) -> dict:
        return {**status, "phase": "Running"}

    after = await objects.update_status(ref.kind, ref.namespace, ref.name, mutate)
    assert after is not None
    assert after["status"]["phase"] == "Running"
    stored = api.get("arks.ai/v1", "arksapplications", "default", "app-qwen")
    assert stored["status"]["phase"] == "Running"
    assert stored["metadata"]["finalizers"] == ["a/b"]

    # A burst of writes to one object starts each from the last write's answer, not from
    # a cache the watch has not brought up to date yet: no write conflicts with our own.
    puts_before = sum(1 for m, p in api.requests if m == "PUT" and p.endswith("/status"))
    for index in range(8):
        burst = await objects.update_status(
            ref.kind, ref.namespace, ref.name, lambda s, i=index: {**s, "replicas": i + 1}
        )
        assert burst is not None
    puts = sum(1 for m, p in api.requests if m == "PUT" and p.endswith("/status"))
    assert puts - puts_before == 8, "one PUT per write: none was a 409"
    assert (
        api.get("arks.ai/v1", "arksapplications", "default", "app-qwen")["status"]["replicas"] == 8
    )

    # A stale cache copy: the first PUT is a 409, the retry reads and wins.
    api.fail_next(409, method="PUT")
    again = await objects.update_status(
        ref.kind, ref.namespace, ref.name, lambda s: {**s, "phase": "Creating"}
    )
    assert again is not None
    assert again["status"]["phase"] == "Creating"
    api.fail_next(409, count=20, method="PATCH")
    with pytest.raises(ConflictError):
        await objects.set_finalizers(ref.kind, ref.namespace, ref.name, [])
    assert await objects.update_status("ArksApplication", "default", "nope", mutate) is None
    stop.set()
    await task
