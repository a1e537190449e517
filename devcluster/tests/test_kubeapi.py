"""The dev cluster's API server, driven by the real kubernetes-asyncio client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio import client, watch

from arks_devcluster import FakeKubeApi, serve

GROUP, VERSION, PLURAL = "arks.ai", "v1", "arksquotas"
MERGE = "application/merge-patch+json"


def quota(name: str, limit: int = 100, **labels: str) -> dict:
    return {
        "apiVersion": "arks.ai/v1",
        "kind": "ArksQuota",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"quotas": [{"type": "total", "value": limit}]},
    }


@pytest.fixture
async def kube() -> AsyncIterator[tuple[FakeKubeApi, client.CustomObjectsApi, client.CoreV1Api]]:
    async with serve() as (api, url):
        configuration = client.Configuration(host=url)
        async with client.ApiClient(configuration) as api_client:
            yield api, client.CustomObjectsApi(api_client), client.CoreV1Api(api_client)


async def test_create_get_and_status_subresource(kube):
    _, custom, _ = kube
    created = await custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, {**quota("q"), "status": {"ignored": True}}
    )
    meta = created["metadata"]
    assert meta["generation"] == 1
    assert meta["uid"]
    assert meta["resourceVersion"]
    assert "status" not in created  # dropped on create, as with subresources.status

    status_body = {**created, "status": {"quotaStatus": [{"type": "total", "used": 5}]}}
    written = await custom.replace_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "q", status_body
    )
    assert written["status"]["quotaStatus"][0]["used"] == 5
    assert written["metadata"]["generation"] == 1  # status is not the spec
    assert int(written["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])

    # the main path keeps the status, and a spec change bumps the generation
    changed = {**written, "spec": {"quotas": [{"type": "total", "value": 200}]}, "status": {}}
    replaced = await custom.replace_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "q", changed
    )
    assert replaced["metadata"]["generation"] == 2
    assert replaced["status"]["quotaStatus"][0]["used"] == 5
    got = await custom.get_namespaced_custom_object_status(GROUP, VERSION, "default", PLURAL, "q")
    assert got["spec"]["quotas"][0]["value"] == 200


async def test_stale_resource_version_conflicts_and_missing_objects_are_404(kube):
    _, custom, _ = kube
    created = await custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, quota("q")
    )
    await custom.replace_namespaced_custom_object_status(
        GROUP,
        VERSION,
        "default",
        PLURAL,
        "q",
        {**created, "status": {"quotaStatus": [{"type": "total", "used": 1}]}},
    )
    with pytest.raises(client.ApiException) as conflict:
        await custom.replace_namespaced_custom_object_status(
            GROUP,
            VERSION,
            "default",
            PLURAL,
            "q",
            {**created, "status": {"quotaStatus": [{"type": "total", "used": 2}]}},
        )
    assert conflict.value.status == 409
    assert json.loads(conflict.value.body)["reason"] == "Conflict"
    with pytest.raises(client.ApiException) as exists:
        await custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, quota("q"))
    assert exists.value.status == 409
    with pytest.raises(client.ApiException) as missing:
        await custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "nope")
    assert missing.value.status == 404
    assert json.loads(missing.value.body)["reason"] == "NotFound"


async def test_merge_and_json_patches_and_refused_strategic_merge_on_custom_resources(kube):
    _, custom, core = kube
    await custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, quota("q", team="a")
    )
    patched = await custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        "default",
        PLURAL,
        "q",
        {"metadata": {"labels": {"team": None, "x": "1"}}},
        _content_type=MERGE,
    )
    assert patched["metadata"]["labels"] == {"x": "1"}
    assert patched["metadata"]["generation"] == 1
    status = await custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        "default",
        PLURAL,
        "q",
        [
            {
                "op": "add",
                "path": "/status",
                "value": {"quotaStatus": [{"type": "total", "used": 3}]},
            }
        ],
    )
    assert status["status"] == {"quotaStatus": [{"type": "total", "used": 3}]}
    # the configmap (a built-in type) takes a strategic merge patch as a merge
    await core.create_namespaced_config_map(
        "default", {"metadata": {"name": "c"}, "data": {"a": "1"}}
    )
    cm = await core.patch_namespaced_config_map("c", "default", {"data": {"b": "2"}})
    assert cm.data == {"a": "1", "b": "2"}
    # a dict is not a JSON patch, and custom resources take no strategic merge patch
    with pytest.raises(client.ApiException) as not_a_list:
        await custom.patch_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, "q", {"spec": {}}
        )
    assert not_a_list.value.status == 400
    with pytest.raises(client.ApiException) as strategic:
        await custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            "default",
            PLURAL,
            "q",
            {"spec": {}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert strategic.value.status == 415


async def test_label_selectors(kube):
    _, custom, _ = kube
    for name, team in (("a", "x"), ("b", "y"), ("c", "x")):
        await custom.create_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, quota(name, team=team)
        )

    async def names(selector: str) -> list[str]:
        listed = await custom.list_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, label_selector=selector
        )
        return sorted(i["metadata"]["name"] for i in listed["items"])

    assert await names("team=x") == ["a", "c"]
    assert await names("team!=x") == ["b"]
    assert await names("team in (y, z)") == ["b"]
    assert await names("team notin (y)") == ["a", "c"]
    assert await names("team") == ["a", "b", "c"]
    assert await names("!team") == []


async def test_finalizers_hold_deletion_and_owners_collect_dependents(kube):
    api, custom, core = kube
    body = quota("q")
    body["metadata"]["finalizers"] = ["arks.ai/cleanup"]
    owner = await custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)
    await core.create_namespaced_config_map(
        "default",
        {
            "metadata": {
                "name": "dep",
                "ownerReferences": [
                    {
                        "apiVersion": "arks.ai/v1",
                        "kind": "ArksQuota",
                        "name": "q",
                        "uid": owner["metadata"]["uid"],
                    }
                ],
            }
        },
    )
    await custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "q")
    held = await custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "q")
    assert held["metadata"]["deletionTimestamp"]
    await custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        "default",
        PLURAL,
        "q",
        {"metadata": {"finalizers": None}},
        _content_type=MERGE,
    )
    assert api.get("arks.ai/v1", PLURAL, "default", "q") is None
    assert api.get("v1", "configmaps", "default", "dep") is None


async def test_watch_from_a_version_with_bookmarks_and_410_for_expired_ones(kube):
    api, custom, _ = kube
    first = await custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, quota("a")
    )
    since = first["metadata"]["resourceVersion"]

    async def changes() -> None:
        await asyncio.sleep(0.2)
        await custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, quota("b"))
        await custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "a")

    seen: list[tuple[str, str]] = []
    task = asyncio.create_task(changes())
    w = watch.Watch()
    async with w.stream(
        custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        "default",
        PLURAL,
        resource_version=since,
        allow_watch_bookmarks=True,
        timeout_seconds=3,
    ) as stream:
        async for event in stream:
            seen.append((event["type"], event["object"]["metadata"].get("name", "")))
            if ("DELETED", "a") in seen and any(t == "BOOKMARK" for t, _ in seen):
                break
    await task
    assert [e for e in seen if e[0] != "BOOKMARK"] == [("ADDED", "b"), ("DELETED", "a")]

    # a version older than the history kept is gone: an ERROR event with 410
    api.store.compact()
    response = await custom.list_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, watch=True, resource_version="1", _preload_content=False
    )
    line = json.loads(await response.content.readline())
    response.release()
    assert line["type"] == "ERROR"
    assert line["object"]["code"] == 410


async def test_injected_failures(kube):
    api, custom, _ = kube
    api.fail_next(503)
    with pytest.raises(client.ApiException) as failed:
        await custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    assert failed.value.status == 503
    listed = await custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    assert listed["items"] == []
