"""What the reconciler says about resources it cannot run, and whose fields it leaves alone."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from arks_common import events, messaging, resources, subjects
from arks_common.store import ResourceStore
from arks_reconciler.testing import (
    InProcessReconciler,
    app_obj,
    endpoint_obj,
    eventually,
    model_obj,
    quota_obj,
    token_obj,
)


async def status_of(store: ResourceStore, kind: str, name: str) -> dict[str, Any]:
    obj = await store.get(kind, "default", name)
    return (obj or {}).get("status") or {}


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


async def reason_is(
    store: ResourceStore, kind: str, name: str, type_: str, reason: str
) -> dict[str, Any] | None:
    status = await status_of(store, kind, name)
    return status if cond(status, type_).get("reason") == reason else None


async def test_applications_that_cannot_run_say_what_to_fix(
    reconciler: InProcessReconciler, bus: messaging.Bus, store: ResourceStore
) -> None:
    changes: asyncio.Queue[events.ResourceStatusChanged] = asyncio.Queue()

    async def on_change(msg: Any) -> None:
        changes.put_nowait(events.ResourceStatusChanged.from_bytes(msg.data))

    sub = await bus.nc.subscribe(subjects.RESOURCE_STATUS_ALL, cb=on_change)
    try:
        await store.apply(model_obj())
        await store.apply(app_obj("app-vllm", runtime="vllm"))
        await store.apply(app_obj("app-dynamo", runtime="dynamo"))
        await store.apply(app_obj("app-big", runtime="sglang", size=2))
        await store.apply(app_obj("app-orphan", model={"name": "later"}))
        await store.apply(app_obj("app-quotes", runtimeCommonArgs=["--chat-template 'x"]))

        vllm = await eventually(
            lambda: reason_is(store, "ArksApplication", "app-vllm", "Ready", "RuntimeNotFound"),
            what="vllm reported missing",
        )
        assert vllm["phase"] == "Failed"
        assert "`vllm`" in cond(vllm, "Ready")["message"]
        dynamo = await eventually(
            lambda: reason_is(
                store, "ArksApplication", "app-dynamo", "Precheck", "RuntimeNotSupport"
            ),
            what="dynamo refused",
        )
        assert dynamo["phase"] == "Failed"
        assert cond(dynamo, "Loaded")["status"] == "Unknown"
        big = await eventually(
            lambda: reason_is(store, "ArksApplication", "app-big", "Precheck", "SizeNotSupported"),
            what="size refused",
        )
        assert "spec.size" in cond(big, "Precheck")["message"]
        quotes = await eventually(
            lambda: reason_is(
                store, "ArksApplication", "app-quotes", "Precheck", "InvalidArguments"
            ),
            what="unbalanced quotes refused",
        )
        assert "spec.runtimeCommonArgs" in cond(quotes, "Precheck")["message"]
        orphan = await eventually(
            lambda: reason_is(store, "ArksApplication", "app-orphan", "Loaded", "ModelNotExist"),
            what="missing model reported",
        )
        assert orphan["phase"] == "Failed"

        # Failed is not terminal: creating the model brings the application up.
        await store.apply(model_obj("later"))
        await eventually(
            lambda: reason_is(store, "ArksApplication", "app-orphan", "Ready", "Running"),
            what="app-orphan Running",
        )

        seen: list[events.ResourceStatusChanged] = []
        while not changes.empty():
            seen.append(changes.get_nowait())
        orphan_events = [e for e in seen if e.name == "app-orphan"]
        assert [e.phase for e in orphan_events][-1] == "Running"
        assert any(e.event_type == "Warning" and e.phase == "Failed" for e in orphan_events)
        assert all(e.kind == "ArksApplication" for e in orphan_events)
        assert len({e.id for e in seen}) == len(seen)
    finally:
        await sub.unsubscribe()


async def test_invalid_objects_get_a_condition(
    reconciler: InProcessReconciler, bus: messaging.Bus, store: ResourceStore
) -> None:
    # Written around the store's validation, as an older version or a hand edit might.
    bad = app_obj("bad", runtime="tgi")
    bad["metadata"].update(uid="u-1", generation=1, creationTimestamp="2026-01-01T00:00:00Z")
    kv = await bus.kv(subjects.RESOURCES_BUCKET)
    await kv.put(subjects.resource_key("arksapplications", "default", "bad"), orjson.dumps(bad))
    status = await eventually(
        lambda: reason_is(store, "ArksApplication", "bad", "Ready", "InvalidSpec"),
        what="InvalidSpec",
    )
    assert status["phase"] == "Failed"
    assert "spec.runtime" in cond(status, "Ready")["message"]


async def test_tokens_quotas_and_disaggregated_apps(
    reconciler: InProcessReconciler, bus: messaging.Bus, store: ResourceStore
) -> None:
    await store.apply(token_obj("first"))
    await asyncio.sleep(1.1)  # creation timestamps have second precision
    await store.apply(token_obj("second"))
    await store.apply(token_obj("lonely", token="sk-lonely"))
    second = await eventually(
        lambda: reason_is(store, "ArksToken", "second", "Ready", "DuplicateToken"),
        what="duplicate reported",
    )
    assert "default/first" in cond(second, "Ready")["message"]
    assert "sk-test" not in str(second)
    lonely = await eventually(
        lambda: reason_is(store, "ArksToken", "lonely", "ReferencesResolved", "NotFound"),
        what="missing references reported",
    )
    assert "ArksQuota basic-quota" in cond(lonely, "ReferencesResolved")["message"]
    kv = await bus.kv(subjects.TOKENS_BUCKET)
    grant = events.TokenGrant.from_bytes(
        (await kv.get(resources.hash_token("sk-test123456"))).value or b""
    )
    assert grant.token_name == "first"

    # The accountant's usage fields survive the reconciler's status writes.
    await store.apply(quota_obj())
    await eventually(
        lambda: reason_is(store, "ArksQuota", "basic-quota", "Ready", "Published"),
        what="quota published",
    )

    def usage(status: dict[str, Any]) -> dict[str, Any]:
        return {
            **status,
            "quotaStatus": [{"type": "total", "used": 42}],
            "budgetStatus": {"spent": "1.25", "currency": "USD"},
        }

    await store.update_status("ArksQuota", "default", "basic-quota", usage)
    await store.apply(quota_obj(quotas=[{"type": "total", "value": 1000}]))

    async def regenerated() -> dict[str, Any] | None:
        status = await status_of(store, "ArksQuota", "basic-quota")
        return status if status.get("observedGeneration") == 2 else None

    status = await eventually(regenerated, what="quota observedGeneration 2")
    assert status["quotaStatus"] == [{"type": "total", "used": 42}]
    assert status["budgetStatus"]["spent"] == "1.25"
    assert "total 1000" in cond(status, "Ready")["message"]

    # Disaggregated with the simulator: decode replicas take the endpoint's traffic.
    await store.apply(model_obj())
    await store.apply(endpoint_obj())
    await store.apply(
        {
            "apiVersion": "arks.ai/v1",
            "kind": "ArksDisaggregatedApplication",
            "metadata": {"name": "pd", "namespace": "default"},
            "spec": {
                "runtime": "sim",
                "model": {"name": "qwen-7b"},
                "prefill": {"replicas": 1},
                "decode": {"replicas": 2},
            },
        }
    )
    pd = await eventually(
        lambda: reason_is(store, "ArksDisaggregatedApplication", "pd", "Ready", "Running"),
        what="pd Running",
    )
    assert pd["decode"]["readyReplicas"] == 2
    assert pd["prefill"]["readyReplicas"] == 1
    assert pd["router"]["replicas"] == 0
    routes = await bus.kv(subjects.ROUTES_BUCKET)

    async def decode_routes() -> events.RouteTable | None:
        table = events.RouteTable.from_bytes((await routes.get("default.qwen-7b")).value or b"")
        return table if len(table.backends) == 2 else None

    table = await eventually(decode_routes, what="two decode backends")
    assert {b.application for b in table.backends} == {"pd"}
    assert all("-decode-" in (b.replica or "") for b in table.backends)
