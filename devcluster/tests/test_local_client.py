"""`LocalClient`: in-process reads and writes obey the server's rules and reach watchers."""

from __future__ import annotations

import asyncio

import pytest

from arks_devcluster import ApiError, FakeKubeApi
from arks_devcluster.local_client import LocalClient, controller_ref


def _pod(name: str, **labels: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running"},
    }


async def test_writes_are_admitted_tracked_and_observed() -> None:
    api = FakeKubeApi()
    client = LocalClient(api, manager="test-controller")
    with client.subscribe(("", "pods")) as changes:
        created = client.create(_pod("a", app="x"))
        assert "status" not in created, "a create drops status, as a POST does"
        assert created["metadata"]["managedFields"][0]["manager"] == "test-controller"
        event = await asyncio.wait_for(changes.get(), 1)
        assert (event.type, event.obj["metadata"]["name"]) == ("ADDED", "a")
        created["status"] = {"phase": "Running"}
        updated = client.update(created, status=True)
        assert updated["status"]["phase"] == "Running"
        assert (await asyncio.wait_for(changes.get(), 1)).type == "MODIFIED"
        with pytest.raises(ApiError) as stale:
            client.update(created, status=True)
        assert stale.value.code == 409
        with pytest.raises(ApiError) as bad:
            client.create(_pod("Not_A_Name"))
        assert bad.value.code == 422
        client.delete(updated)
        client.delete(updated)  # already gone: not an error
        assert (await asyncio.wait_for(changes.get(), 1)).type == "DELETED"
    assert client.get("", "pods", "default", "a") is None


async def test_lists_by_selector_and_owner_and_records_events() -> None:
    api = FakeKubeApi()
    client = LocalClient(api, manager="test-controller")
    owner = client.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "owner", "namespace": "default"},
        }
    )
    child = _pod("child", app="x")
    child["metadata"]["ownerReferences"] = [controller_ref(owner)]
    client.create(child)
    client.create(_pod("other", app="y"))
    assert [p["metadata"]["name"] for p in client.list("", "pods", "default", "app=x")] == ["child"]
    assert [p["metadata"]["name"] for p in client.owned_by(owner, "", "pods")] == ["child"]
    assert client.list("example.com", "widgets") == []
    client.event(owner, "Made", "made it")
    client.event(owner, "Made", "made it")
    (event,) = client.list("", "events", "default")
    assert (event["reason"], event["count"], event["type"]) == ("Made", 2, "Normal")
    client.delete(owner)
    assert client.get("", "pods", "default", "child") is None, "the cascade ran"


async def test_events_name_the_component_apart_from_the_field_manager() -> None:
    api = FakeKubeApi()
    client = LocalClient(api, manager="kube-controller-manager", component="job-controller")
    owner = client.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "o", "namespace": "default"},
            "data": {"k": "v"},
        }
    )
    assert owner["metadata"]["managedFields"][0]["manager"] == "kube-controller-manager"
    client.event(owner, "Completed", "Job completed")
    (event,) = client.list("", "events", "default")
    assert event["source"] == {"component": "job-controller"}
    assert event["reportingComponent"] == "job-controller"


async def test_scans_read_the_store_in_place_and_hand_out_copies() -> None:
    """Events and ownership are matched on the stored objects (copying every one on each
    call made a 1,000-pod cluster quadratic); what a caller gets back is still a copy."""
    api = FakeKubeApi()
    client = LocalClient(api, manager="test-controller")
    owner = client.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "o", "namespace": "default"}}
    )
    child = _pod("child")
    child["metadata"]["ownerReferences"] = [controller_ref(owner)]
    client.create(child)
    for index in range(50):
        client.event(owner, "Other", f"message {index}")
    client.event(owner, "Made", "made it")
    client.event(owner, "Made", "made it")
    made = [e for e in client.list("", "events", "default") if e["reason"] == "Made"]
    assert [e["count"] for e in made] == [2]
    (owned,) = client.owned_by(owner, "", "pods")
    owned["metadata"]["labels"] = {"changed": "yes"}
    assert client.get("", "pods", "default", "child")["metadata"]["labels"] == {}
    stored = client.stored("", "pods", "default")
    assert stored[0] is api.store.find(api.registry.resource("", "pods"), "default", "child")
    assert client.stored("example.com", "widgets") == []
