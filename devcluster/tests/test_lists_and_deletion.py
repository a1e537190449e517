"""Lists, deletion and Events as Kubernetes documents them: fieldSelector, pagination,
delete preconditions, propagationPolicy (Background, Foreground, Orphan) with the
ownerReference cascade and finalizers, and events through both Event APIs (with
`kubectl describe` showing them)."""

from __future__ import annotations

import json

import pytest
from kubernetes_asyncio import client


def configmap(name: str, namespace: str = "default", **meta) -> dict:
    return {"metadata": {"name": name, "namespace": namespace, **meta}, "data": {"k": name}}


async def test_field_selectors(cluster):
    core = client.CoreV1Api(cluster.client)
    await core.create_namespace({"metadata": {"name": "other"}})
    for name, ns in (("a", "default"), ("b", "default"), ("a", "other")):
        await core.create_namespaced_config_map(ns, configmap(name, ns))
    got = await cluster.kubectl.check(
        "get", "configmaps", "-A", "--field-selector", "metadata.name=a", "-o", "name"
    )
    assert got.out.split() == ["configmap/a", "configmap/a"]
    listed = await core.list_config_map_for_all_namespaces(
        field_selector="metadata.name!=a,metadata.namespace==default"
    )
    assert [c.metadata.name for c in listed.items] == ["b"]
    refused = await cluster.kubectl.run("get", "aq", "--field-selector", "spec.resetPeriod=x")
    assert refused.code == 1
    assert "field label not supported: spec.resetPeriod" in refused.err
    with pytest.raises(client.ApiException) as bad:
        await core.list_namespaced_config_map("default", field_selector="data.k=a")
    assert bad.value.status == 400


async def test_pagination_with_limit_and_continue(cluster):
    core = client.CoreV1Api(cluster.client)
    names = [f"cm-{i}" for i in range(5)]
    for name in names:
        await core.create_namespaced_config_map("default", configmap(name))
    seen, token, remaining = [], None, []
    while True:
        page = await core.list_namespaced_config_map("default", limit=2, _continue=token)
        seen += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        if not token:
            break
        remaining.append(page.metadata.remaining_item_count)
    assert seen == names
    assert remaining == [3, 1]
    chunked = await cluster.kubectl.check("get", "configmaps", "--chunk-size=2", "-o", "name")
    assert chunked.out.split() == [f"configmap/{n}" for n in names]
    with pytest.raises(client.ApiException) as bad:
        await core.list_namespaced_config_map("default", limit=2, _continue="not-a-token")
    assert bad.value.status == 400
    first = await core.list_namespaced_config_map("default", limit=2)
    for i in range(3):
        await core.patch_namespaced_config_map("cm-0", "default", {"data": {"n": str(i)}})
    cluster.api.store.compact()
    with pytest.raises(client.ApiException) as expired:
        await core.list_namespaced_config_map(
            "default", limit=2, _continue=first.metadata._continue
        )
    assert expired.value.status == 410


async def test_delete_preconditions(cluster):
    core = client.CoreV1Api(cluster.client)
    created = await core.create_namespaced_config_map("default", configmap("c"))
    with pytest.raises(client.ApiException) as refused:
        await core.delete_namespaced_config_map(
            "c", "default", body={"preconditions": {"uid": "not-its-uid"}}
        )
    assert refused.value.status == 409
    assert (
        "Precondition failed: UID in precondition: not-its-uid"
        in json.loads(refused.value.body)["message"]
    )
    with pytest.raises(client.ApiException) as stale:
        await core.delete_namespaced_config_map(
            "c", "default", body={"preconditions": {"resourceVersion": "1"}}
        )
    assert stale.value.status == 409
    await core.delete_namespaced_config_map(
        "c",
        "default",
        body={"preconditions": {"uid": created.metadata.uid}},
    )
    assert cluster.api.get("v1", "configmaps", "default", "c") is None


async def _family(core: client.CoreV1Api, *, held: bool = False) -> str:
    owner = await core.create_namespaced_config_map("default", configmap("owner"))
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner.metadata.uid,
        "blockOwnerDeletion": True,
    }
    for name in ("dep-1", "dep-2"):
        extra = {"finalizers": ["example.com/hold"]} if held and name == "dep-1" else {}
        await core.create_namespaced_config_map(
            "default", configmap(name, ownerReferences=[ref], **extra)
        )
    return owner.metadata.uid


async def test_background_and_orphan_propagation(cluster):
    core = client.CoreV1Api(cluster.client)
    await _family(core)
    await cluster.kubectl.check("delete", "configmap", "owner")  # background, kubectl's default
    assert [c.metadata.name for c in (await core.list_namespaced_config_map("default")).items] == []
    await _family(core)
    await cluster.kubectl.check("delete", "configmap", "owner", "--cascade=orphan")
    left = (await core.list_namespaced_config_map("default")).items
    assert [c.metadata.name for c in left] == ["dep-1", "dep-2"]
    assert all(not c.metadata.owner_references for c in left)


async def test_foreground_propagation_waits_for_dependents(cluster):
    core = client.CoreV1Api(cluster.client)
    await _family(core, held=True)
    await cluster.kubectl.check(
        "delete", "configmap", "owner", "--cascade=foreground", "--wait=false"
    )
    owner = await core.read_namespaced_config_map("owner", "default")
    assert owner.metadata.deletion_timestamp is not None
    assert owner.metadata.finalizers == ["foregroundDeletion"]
    held = await core.read_namespaced_config_map("dep-1", "default")
    assert held.metadata.deletion_timestamp is not None
    assert cluster.api.get("v1", "configmaps", "default", "dep-2") is None
    await core.patch_namespaced_config_map(
        "dep-1",
        "default",
        [{"op": "remove", "path": "/metadata/finalizers"}],
    )
    assert (await core.list_namespaced_config_map("default")).items == []


async def test_events_through_both_apis_and_kubectl_describe(cluster):
    core = client.CoreV1Api(cluster.client)
    events = client.EventsV1Api(cluster.client)
    cm = await core.create_namespaced_config_map("default", configmap("app"))
    regarding = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "app",
        "namespace": "default",
        "uid": cm.metadata.uid,
    }
    await core.create_namespaced_event(
        "default",
        {
            "metadata": {"name": "app.1"},
            "involvedObject": regarding,
            "reason": "Loaded",
            "message": "configuration loaded",
            "type": "Normal",
            "source": {"component": "arks-test"},
            "firstTimestamp": "2026-01-01T00:00:00Z",
            "lastTimestamp": "2026-01-01T00:00:00Z",
            # without it the events.k8s.io view has eventTime null, as upstream, which
            # kubernetes-asyncio's EventsV1Event refuses to deserialise
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "count": 1,
        },
    )
    await events.create_namespaced_event(
        "default",
        {
            "metadata": {"name": "app.2"},
            "regarding": regarding,
            "reason": "Rejected",
            "note": "a key is missing",
            "type": "Warning",
            "action": "Validate",
            "eventTime": "2026-01-01T00:00:01.000000Z",
            "reportingController": "arks.ai/reconciler",
            "reportingInstance": "reconciler-0",
        },
    )
    through_core = await core.list_namespaced_event(
        "default", field_selector="involvedObject.name=app"
    )
    assert sorted(e.reason for e in through_core.items) == ["Loaded", "Rejected"]
    assert next(e for e in through_core.items if e.reason == "Rejected").message == (
        "a key is missing"
    )
    through_events = await events.list_namespaced_event("default")
    assert sorted(e.note for e in through_events.items) == [
        "a key is missing",
        "configuration loaded",
    ]
    described = await cluster.kubectl.check("describe", "configmap", "app")
    assert "Loaded" in described.out
    assert "configuration loaded" in described.out
    assert "Rejected" in described.out
    assert "a key is missing" in described.out
