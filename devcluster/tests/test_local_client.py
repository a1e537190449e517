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
