"""Exhaustion notices, period resets, limit changes, parallel accountants, status write-back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from arks_accountant import keys
from arks_accountant.local_status import LocalStatusWriter
from arks_accountant.testing import (
    FakeClock,
    make_settings,
    publish_usage,
    put_spec,
    running_accountant,
    status_quota,
    used,
    wait_for,
)
from arks_common import events, ledger, subjects
from arks_common.store import ResourceStore
from arks_common.testing.builders import make_quota_spec, make_usage_event


class Notices:
    """Every QuotaStateChanged published on the core subject of one quota."""

    def __init__(self) -> None:
        self.received: list[events.QuotaStateChanged] = []

    async def receive(self, msg) -> None:
        self.received.append(events.QuotaStateChanged.from_bytes(msg.data))

    def of(self, reason: str) -> list[events.QuotaStateChanged]:
        return [n for n in self.received if n.reason == reason]


async def listen(bus, namespace: str, quota: str) -> Notices:
    notices = Notices()
    await bus.nc.subscribe(subjects.quota_state_subject(namespace, quota), cb=notices.receive)
    await bus.nc.flush()
    return notices


async def kv_state(bus, namespace: str, quota: str) -> events.QuotaStateChanged:
    kv = await bus.kv(subjects.QUOTA_STATE_BUCKET)
    entry = await kv.get(subjects.namespaced_key(namespace, quota))
    return events.QuotaStateChanged.from_bytes(entry.value)


def limited(total: int, **overrides: object) -> events.QuotaSpec:
    return make_quota_spec(limits=[events.QuotaLimit(type="total", value=total)], **overrides)


async def test_two_accountants_exact_totals_and_one_exhaustion_notice(
    bus, redis, nats_server, valkey_server
):
    await put_spec(bus, limited(1000))
    notices = await listen(bus, "default", "basic-quota")
    usage = [make_usage_event(prompt_tokens=4, completion_tokens=6) for _ in range(400)]
    settings = make_settings(nats_server.url, valkey_server.url)
    first = settings.model_copy(update={"instance_id": "one"})
    second = settings.model_copy(update={"instance_id": "two"})
    async with running_accountant(first) as one, running_accountant(second) as two:
        await publish_usage(bus, *usage)

        async def all_applied():
            return (await used(redis, "default", "basic-quota"))["total"] == 4000

        await wait_for(all_applied, what="4000 tokens")
        applied = [a.metric("arks_accountant_events_total", result="applied") for a in (one, two)]
        await asyncio.sleep(0.3)
    assert sum(applied) == 400
    assert all(n > 0 for n in applied), applied
    exhausted = notices.of("exhausted")
    assert len(exhausted) == 1
    assert exhausted[0].exhausted
    assert exhausted[0].exhausted_kinds == ["total"]
    assert exhausted[0].limits == {"total": 1000}
    assert exhausted[0].used["total"] >= 1000
    assert (await kv_state(bus, "default", "basic-quota")).exhausted


async def test_raising_the_limit_unexhausts(bus, redis, nats_server, valkey_server):
    await put_spec(bus, limited(50))
    notices = await listen(bus, "default", "basic-quota")
    settings = make_settings(nats_server.url, valkey_server.url)
    async with running_accountant(settings):
        await publish_usage(bus, make_usage_event(prompt_tokens=30, completion_tokens=30))
        await wait_for(lambda: len(notices.of("exhausted")) == 1, what="exhausted")
        await put_spec(bus, limited(500))
        await wait_for(lambda: len(notices.of("limit_changed")) == 1, what="limit raised")
    raised = notices.of("limit_changed")[0]
    assert not raised.exhausted
    assert raised.limits == {"total": 500}
    assert not (await kv_state(bus, "default", "basic-quota")).exhausted


async def test_money_budget_exhausts(bus, redis, nats_server, valkey_server):
    spec = make_quota_spec(
        limits=[],
        budget_nanos=1_000_000,  # 0.001 USD
        prices=[events.EndpointPrice(endpoint="qwen-7b", prompt=Decimal(1), completion=Decimal(2))],
    )
    await put_spec(bus, spec)
    notices = await listen(bus, "default", "basic-quota")
    settings = make_settings(nats_server.url, valkey_server.url)
    async with running_accountant(settings):
        # 300 prompt + 400 completion tokens = 0.0011 USD
        await publish_usage(bus, make_usage_event(prompt_tokens=300, completion_tokens=400))
        await wait_for(lambda: len(notices.of("exhausted")) == 1, what="budget exhausted")
    assert notices.of("exhausted")[0].exhausted_kinds == ["cost"]
    assert (await used(redis, "default", "basic-quota"))["cost"] == 1_100_000


async def test_daily_period_reset(bus, redis, nats_server, valkey_server):
    clock = FakeClock(datetime(2026, 3, 9, 23, 59, 50, tzinfo=UTC))
    await put_spec(bus, limited(100, reset_period="daily"))
    notices = await listen(bus, "default", "basic-quota")
    settings = make_settings(nats_server.url, valkey_server.url)
    day1 = ledger.period_id("daily", clock.at)
    async with running_accountant(settings, clock=clock):
        await publish_usage(
            bus, make_usage_event(quota_period=day1, prompt_tokens=60, completion_tokens=60)
        )
        await wait_for(lambda: len(notices.of("exhausted")) == 1, what="exhausted on day 1")
        clock.advance(seconds=20)
        await wait_for(lambda: len(notices.of("reset")) == 1, what="reset at midnight")
        day2 = ledger.period_id("daily", clock.at)
        await publish_usage(
            bus, make_usage_event(quota_period=day2, prompt_tokens=5, completion_tokens=5)
        )

        async def day2_counted():
            return (await used(redis, "default", "basic-quota", day2))["total"] == 10

        await wait_for(day2_counted, what="day 2 usage")
        # two days later only the current period and the two before it stay in the account
        clock.advance(days=2)
        account = keys.Account("default", "basic-quota").hash_key

        async def day1_pruned():
            return not await redis.hexists(account, keys.period_field(day1, "total"))

        await wait_for(day1_pruned, what="old period pruned")
        assert await redis.hexists(account, keys.period_field(day2, "total"))
    reset = notices.of("reset")[0]
    assert not reset.exhausted
    assert reset.period == day2 == "d2026-03-10"
    assert (await used(redis, "default", "basic-quota", day1))["total"] == 120
    assert len(notices.of("exhausted")) == 1


async def test_status_written_to_the_local_store(bus, redis, nats_server, valkey_server):
    store = ResourceStore(bus)
    obj, spec = status_quota()
    await store.create(obj)
    await put_spec(bus, spec)
    settings = make_settings(nats_server.url, valkey_server.url)
    async with running_accountant(settings, status_writer=LocalStatusWriter(store)):
        await publish_usage(
            bus, *(make_usage_event(prompt_tokens=100, completion_tokens=50) for _ in range(3))
        )

        async def status_written():
            obj = await store.get("ArksQuota", "default", "basic-quota")
            entries = (obj or {}).get("status", {}).get("quotaStatus", [])
            return [e["used"] for e in entries] == [300, 450]

        await wait_for(status_written, what="status")
        obj = await store.get("ArksQuota", "default", "basic-quota")
    status = obj["status"]
    assert [(q["type"], q["used"]) for q in status["quotaStatus"]] == [
        ("prompt", 300),
        ("total", 450),
    ]
    assert all(q["lastUpdateTime"].endswith("Z") for q in status["quotaStatus"])
    assert Decimal(status["budgetStatus"]["spent"]) == Decimal("0.0012")
    assert status["budgetStatus"]["currency"] == "USD"
    assert "periodStart" not in status
    assert obj["metadata"]["generation"] == 1


async def test_a_lost_announcement_is_made_late(bus, redis, nats_server, valkey_server):
    await put_spec(bus, limited(10))
    settings = make_settings(nats_server.url, valkey_server.url)
    async with running_accountant(settings):
        await publish_usage(bus, make_usage_event(prompt_tokens=10, completion_tokens=10))

        async def exhausted():
            try:
                return (await kv_state(bus, "default", "basic-quota")).exhausted
            except Exception:
                return False

        await wait_for(exhausted, what="exhausted")
    # the announcement was lost: KV still says what it said before
    stale = events.QuotaStateChanged(
        id="stale", namespace="default", quota="basic-quota", period="lifetime", exhausted=False
    )
    kv = await bus.kv(subjects.QUOTA_STATE_BUCKET)
    await kv.put(subjects.namespaced_key("default", "basic-quota"), stale.to_bytes())
    notices = await listen(bus, "default", "basic-quota")
    async with running_accountant(settings.model_copy(update={"instance_id": "other"})):
        await wait_for(lambda: len(notices.received) == 1, what="late announcement")
        await asyncio.sleep(0.5)  # and only one
    assert len(notices.received) == 1
    assert notices.received[0].exhausted
    assert notices.received[0].reason == "restored"
    assert (await kv_state(bus, "default", "basic-quota")).exhausted
