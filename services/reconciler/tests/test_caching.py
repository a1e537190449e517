"""The reconciler's cache: a snapshot replaces only the kinds it names (a Kubernetes
informer relists one kind after 410 Gone; the others stay as they were)."""

from __future__ import annotations

from arks_common.store import ObjectRef
from arks_reconciler.caching import ResourceCache


def _quota(name: str) -> dict:
    return {
        "apiVersion": "arks.ai/v1",
        "kind": "ArksQuota",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"quotas": [{"type": "prompt", "value": 10}]},
    }


def _model(name: str) -> dict:
    return {
        "apiVersion": "arks.ai/v1",
        "kind": "ArksModel",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"model": "Qwen/Qwen2.5-7B-Instruct"},
    }


def _refs(*objs: dict) -> dict[ObjectRef, dict]:
    return {ObjectRef.of(o): o for o in objs}


def test_a_snapshot_replaces_only_its_kinds() -> None:
    cache = ResourceCache()
    assert not cache.synced
    touched = cache.replace(_refs(_quota("a"), _model("m")), {"ArksQuota", "ArksModel"})
    assert touched == {
        ObjectRef("ArksQuota", "default", "a"),
        ObjectRef("ArksModel", "default", "m"),
    }
    assert cache.synced

    touched = cache.replace(_refs(_quota("b")), {"ArksQuota"})
    assert touched == {
        ObjectRef("ArksQuota", "default", "a"),
        ObjectRef("ArksQuota", "default", "b"),
    }
    assert set(cache.refs()) == {
        ObjectRef("ArksQuota", "default", "b"),
        ObjectRef("ArksModel", "default", "m"),
    }, "the quota that went is gone, the model (another kind) stays"

    # objects of a kind the snapshot does not name are not taken from it
    cache.replace(_refs(_model("other")), {"ArksQuota"})
    assert set(cache.refs("ArksModel")) == {ObjectRef("ArksModel", "default", "m")}
    assert set(cache.refs("ArksQuota")) == set()


def test_an_older_copy_never_replaces_a_newer_one() -> None:
    """Our status write's answer goes into the cache at once; a watch event still in
    flight from before it must not take the cache back (the next reconcile would start
    from the older status and write it again)."""
    cache = ResourceCache()
    ref = ObjectRef("ArksQuota", "default", "q")

    def at(version: str, uid: str = "u1", value: int = 10) -> dict:
        obj = _quota("q")
        obj["metadata"].update(resourceVersion=version, uid=uid)
        obj["spec"]["quotas"][0]["value"] = value
        return obj

    cache.put(ref, at("7", value=7))
    cache.put(ref, at("5", value=5))  # older: ignored
    assert cache.entry(ref).raw["spec"]["quotas"][0]["value"] == 7
    cache.put(ref, at("8", value=8))
    assert cache.entry(ref).raw["spec"]["quotas"][0]["value"] == 8
    cache.put(ref, at("3", uid="u2", value=3))  # deleted and created again: a new object
    assert cache.entry(ref).raw["spec"]["quotas"][0]["value"] == 3
    cache.put(ref, at("x", uid="u2", value=4))  # opaque versions: the latest event wins
    assert cache.entry(ref).raw["spec"]["quotas"][0]["value"] == 4
    cache.put(ref, None)
    assert cache.entry(ref) is None
