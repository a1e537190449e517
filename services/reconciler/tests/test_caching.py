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
