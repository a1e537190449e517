"""Settlement against real NATS and Valkey: exactly once, reservations, billing, poison."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from nats.js.api import DeliverPolicy

from arks_accountant import keys
from arks_accountant.testing import (
    expected_used,
    fetch_unacked,
    make_settings,
    publish_usage,
    put_spec,
    running_accountant,
    standalone_accountant,
    stream_messages,
    used,
    wait_for,
)
from arks_common import events, ledger, messaging, subjects
from arks_common.testing.builders import make_quota_spec, make_usage_event


async def read_stream(bus, subject: str, count: int) -> list:
    """The first `count` messages on a subject, read with an ordered push consumer."""
    sub = await bus.js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    try:
        return [await sub.next_msg(timeout=5) for _ in range(count)]
    finally:
        await sub.unsubscribe()


async def test_duplicate_publishes_count_once(bus, redis, nats_server, valkey_server):
    await put_spec(bus, make_quota_spec())
    usage = [make_usage_event(prompt_tokens=i, completion_tokens=3 * i) for i in range(1, 61)]
    settings = make_settings(nats_server.url, valkey_server.url)
    async with running_accountant(settings) as acct:
        await publish_usage(bus, *usage)
        # the same requests again, past the stream's deduplication (new message ids)
        for event in usage[:10]:
            await publish_usage(bus, event, msg_id=f"replay-{event.id}")
        await wait_for(
            lambda: acct.metric("arks_accountant_events_total", result="duplicate") >= 10,
            what="duplicates seen",
        )
        got = await used(redis, "default", "basic-quota")
        assert {k: got[k] for k in ("prompt", "response", "total")} == expected_used(usage)
        assert acct.metric("arks_accountant_events_total", result="applied") == 60
    token = await redis.hgetall(keys.token_usage_key("default", "example-token"))
    assert int(token[b"requests"]) == 60
    assert int(token[b"prompt"]) == sum(e.prompt_tokens for e in usage)
    endpoint = await redis.hgetall(keys.endpoint_usage_key("default", "qwen-7b"))
    assert int(endpoint[b"completion"]) == sum(e.completion_tokens for e in usage)
    assert await stream_messages(bus, subjects.BILLING_STREAM) == 60


async def test_redelivered_batch_is_a_duplicate(bus, redis, nats_server, valkey_server):
    spec = make_quota_spec()
    usage = [make_usage_event(completion_tokens=5) for _ in range(20)]
    await publish_usage(bus, *usage)
    settings = make_settings(nats_server.url, valkey_server.url)
    async with standalone_accountant(bus, redis, settings, specs=[spec]) as accountant:
        batch = await fetch_unacked(bus, settings, 20)
        first = await accountant.handle_batch(batch)
        again = await accountant.handle_batch(batch)  # as if redelivered: never acked
    assert all(isinstance(d, messaging.Ack) for d in [*first, *again])
    got = await used(redis, "default", "basic-quota")
    assert got["response"] == 100
    assert got["total"] == sum(e.total_tokens for e in usage)
    assert await stream_messages(bus, subjects.BILLING_STREAM) == 20


async def test_settlement_releases_the_reservation(bus, redis, nats_server, valkey_server):
    spec = make_quota_spec()
    event = make_usage_event(prompt_tokens=7, completion_tokens=9)
    ns, quota = "default", "basic-quota"
    reserve = {"prompt": 10, "response": 100, "total": 110, "cost": 5000}
    await redis.hset(
        ledger.reservation_key(ns, quota, event.id),
        mapping={"period": "lifetime", **reserve, "expires": 2_000_000_000},
    )
    await redis.zadd(ledger.reservation_index_key(ns, quota), {event.id: 2_000_000_000})
    for kind, amount in reserve.items():
        # another request's reservation stays
        await redis.incrby(ledger.reserved_key(ns, quota, "lifetime", kind), amount + 1)
    await publish_usage(bus, event)
    settings = make_settings(nats_server.url, valkey_server.url)
    async with standalone_accountant(bus, redis, settings, specs=[spec]) as accountant:
        await accountant.handle_batch(await fetch_unacked(bus, settings, 1))
    for kind in reserve:
        assert await redis.get(ledger.reserved_key(ns, quota, "lifetime", kind)) == b"1"
    assert not await redis.exists(ledger.reservation_key(ns, quota, event.id))
    assert await redis.zcard(ledger.reservation_index_key(ns, quota)) == 0
    assert (await used(redis, ns, quota))["total"] == 16


async def test_expired_reservations_are_swept(bus, redis, nats_server, valkey_server):
    await put_spec(bus, make_quota_spec())
    ns, quota = "default", "basic-quota"
    late = make_usage_event(prompt_tokens=3, completion_tokens=4)
    for request_id, expires in ((late.id, 1_000), ("req-alive", 4_000_000_000)):
        await redis.hset(
            ledger.reservation_key(ns, quota, request_id),
            mapping={"period": "lifetime", "total": 50, "prompt": 20, "expires": expires},
        )
        await redis.zadd(ledger.reservation_index_key(ns, quota), {request_id: expires})
    await redis.incrby(ledger.reserved_key(ns, quota, "lifetime", "total"), 100)
    await redis.incrby(ledger.reserved_key(ns, quota, "lifetime", "prompt"), 40)
    settings = make_settings(nats_server.url, valkey_server.url)
    async with running_accountant(settings) as acct:
        await wait_for(
            lambda: acct.metric("arks_accountant_reservations_swept_total") == 1, what="sweep"
        )
        assert await redis.get(ledger.reserved_key(ns, quota, "lifetime", "total")) == b"50"
        assert await redis.get(ledger.reserved_key(ns, quota, "lifetime", "prompt")) == b"20"
        assert await redis.exists(ledger.reservation_key(ns, quota, "req-alive"))
        # the router's event arrives after all: usage applies, nothing is released twice
        await publish_usage(bus, late)

        async def applied():
            return (await used(redis, ns, quota))["total"] == 7

        await wait_for(applied, what="late usage applied")
        assert await redis.get(ledger.reserved_key(ns, quota, "lifetime", "total")) == b"50"


async def test_billing_records_are_priced_exactly(bus, redis, nats_server, valkey_server):
    spec = make_quota_spec(
        budget_nanos=10**12,
        prices=[
            events.EndpointPrice(
                endpoint="qwen-7b",
                prompt=Decimal("0.15"),
                cached_prompt=Decimal("0.075"),
                completion=Decimal("0.6"),
            )
        ],
        price_version="v-2026-01",
    )
    await put_spec(bus, spec)
    priced = make_usage_event(prompt_tokens=1234, cached_tokens=1000, completion_tokens=567)
    free = make_usage_event(endpoint="other-model", prompt_tokens=10, completion_tokens=1)
    no_quota = make_usage_event(quota=None, quota_period=None, token_name="solo")
    settings = make_settings(nats_server.url, valkey_server.url)
    async with running_accountant(settings):
        await publish_usage(bus, priced, free, no_quota)
        quota_msgs = await read_stream(
            bus, subjects.billing_subject("default", quota="basic-quota", token_name="x"), 2
        )
        token_msgs = await read_stream(
            bus, subjects.billing_subject("default", quota=None, token_name="solo"), 1
        )
    records = {
        r.request_id: r for r in (events.BillingRecord.from_bytes(m.data) for m in quota_msgs)
    }
    bill = records[priced.id]
    assert bill.id == events.BillingRecord.id_for(priced.id)
    assert bill.amount_prompt == Decimal("0.0000351")  # 234 uncached at 0.15 / M
    assert bill.amount_cached == Decimal("0.000075")  # 1000 cached at 0.075 / M
    assert bill.amount_completion == Decimal("0.0003402")  # 567 at 0.6 / M
    assert bill.amount_total == Decimal("0.0004503")
    assert bill.charged_nanos == 450300
    assert bill.price_version == "v-2026-01"
    assert bill.currency == "USD"
    assert bill.period == "lifetime"
    assert {m.headers[events.MSG_ID_HEADER] for m in quota_msgs} == {
        events.BillingRecord.id_for(priced.id),
        events.BillingRecord.id_for(free.id),
    }
    unpriced = records[free.id]
    assert unpriced.amount_total == 0
    assert unpriced.price_version == "v-2026-01"
    solo = events.BillingRecord.from_bytes(token_msgs[0].data)
    assert solo.quota is None
    assert solo.price_version == ""
    assert solo.charged_nanos == 0
    assert (await used(redis, "default", "basic-quota"))["cost"] == 450300


async def test_poison_messages_are_dead_lettered(bus, redis, nats_server, valkey_server):
    await put_spec(bus, make_quota_spec())
    subject = subjects.usage_subject("default", "qwen-7b")
    headers = {events.TYPE_HEADER: events.UsageRecorded.TYPE, events.VERSION_HEADER: "1"}
    await bus.js.publish(subject, b"{not json", headers={**headers, events.MSG_ID_HEADER: "p1"})
    bad_period = make_usage_event(quota_period="yesterday")
    good = make_usage_event(prompt_tokens=1, completion_tokens=1)
    await publish_usage(bus, bad_period, good)
    settings = make_settings(nats_server.url, valkey_server.url)
    async with running_accountant(settings):
        dead = await read_stream(bus, subjects.dlq_subject(subjects.USAGE_STREAM), 2)

        async def good_applied():
            return (await used(redis, "default", "basic-quota"))["total"] == 2

        await wait_for(good_applied, what="good event applied")
    reasons = sorted(m.headers[messaging.REASON_HEADER] for m in dead)
    assert "invalid UsageRecorded" in reasons[0]
    assert "quota_period 'yesterday'" in reasons[1]
    assert dead[0].headers[messaging.ORIGIN_STREAM_HEADER] == subjects.USAGE_STREAM
    await asyncio.sleep(0.3)
    assert await stream_messages(bus, subjects.DLQ_STREAM) == 2


async def test_unknown_quota_waits_then_applies_unpriced(bus, redis, nats_server, valkey_server):
    event = make_usage_event(quota="not-yet", prompt_tokens=4, completion_tokens=4)
    settings = make_settings(nats_server.url, valkey_server.url)
    async with running_accountant(settings) as acct:
        await publish_usage(bus, event)
        await wait_for(
            lambda: acct.metric("arks_accountant_events_total", result="applied") == 1,
            within=20,
            what="applied after retries",
        )
        assert acct.metric("arks_accountant_events_total", result="retry") >= 2
    assert (await used(redis, "default", "not-yet"))["total"] == 8
