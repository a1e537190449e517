"""Billing publishes over the wire: confirmed by the stream, duplicates included, and the
fast encoding byte for byte what the BillingRecord model produces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from arks_accountant import keys
from arks_accountant.pricing import UNPRICED, PriceList, bill_for, billing_record, charge
from arks_accountant.publishing import (
    Bill,
    BillingPublisher,
    JetStreamPublisher,
    billing_headers,
)
from arks_accountant.recording import LaneMarkers, LedgerRecorder, Snapshot
from arks_accountant.testing import connected_wire, stream_messages
from arks_common import events, subjects
from arks_common.testing.builders import make_quota_spec, make_usage_event


def bills(n: int) -> list[Bill]:
    out = []
    for _ in range(n):
        event = make_usage_event()
        out.append(Bill.of(billing_record(event, "lifetime", charge(event, UNPRICED))))
    return out


async def test_per_record_publish_is_confirmed_and_deduplicated(bus, nats_server):
    async with connected_wire(nats_server.url) as wire:
        publisher = BillingPublisher(JetStreamPublisher(wire, timeout=5))
        batch = bills(40)
        assert await publisher.publish(batch) == [True] * 40
        assert await publisher.publish(batch[:10]) == [True] * 10  # stored already
    assert await stream_messages(bus, subjects.BILLING_STREAM) == 40
    sub = await bus.js.pull_subscribe(subjects.BILLING_ALL, durable="check")
    stored = await sub.fetch(40, timeout=5)
    first = stored[0]
    assert first.data == batch[0].body
    assert first.headers == {
        events.TYPE_HEADER: "BillingRecord",
        events.VERSION_HEADER: "1",
        events.MSG_ID_HEADER: batch[0].record_id,
    }
    assert first.subject == batch[0].subject.decode()


async def test_publish_without_a_stream_is_not_confirmed(bus, nats_server):
    await bus.js.delete_stream(subjects.BILLING_STREAM)
    async with connected_wire(nats_server.url) as wire:
        publisher = BillingPublisher(JetStreamPublisher(wire, timeout=5))
        assert await publisher.publish(bills(3)) == [False] * 3


async def test_publish_fails_fast_when_the_connection_is_lost(bus, nats_server):
    async with connected_wire(nats_server.url) as wire:
        publisher = BillingPublisher(JetStreamPublisher(wire, timeout=30))
        nats_server.stop()
        try:
            assert await publisher.publish(bills(5)) == [False] * 5
        finally:
            nats_server.start()


def test_fast_bill_is_the_model_bill() -> None:
    price = events.EndpointPrice(
        endpoint="qwen-7b",
        prompt=Decimal("0.15"),
        cached_prompt=Decimal("0.075"),
        completion=Decimal("0.6"),
    )
    prices = PriceList.of(make_quota_spec(prices=[price], price_version="pv-7"))
    cases = [
        make_usage_event(prompt_tokens=523, cached_tokens=40, completion_tokens=77),
        make_usage_event(quota=None, quota_period=None, token_name="solo", model=""),
        make_usage_event(id='weird "id" é ', outcome=events.Outcome.CANCELLED),
        make_usage_event(endpoint="unpriced", prompt_tokens=0, completion_tokens=0),
        make_usage_event(model='Qwen/Qwen2.5 "7B" é\u2028\n\t', backend="b"),
        make_usage_event(prompt_tokens=1, completion_tokens=10**9),
        make_usage_event(occurred_at=datetime(2026, 3, 10, 12, 0, 0, tzinfo=UTC)),
        make_usage_event(occurred_at=datetime(2026, 3, 10, 12, 0, 0, 120000, tzinfo=UTC)),
        make_usage_event(
            occurred_at=datetime(
                2026, 3, 10, 1, 2, 3, 4, tzinfo=timezone(timedelta(hours=-3, minutes=-30))
            )
        ),
        make_usage_event(
            occurred_at=datetime(2026, 3, 10, 1, 2, 3, 4, tzinfo=timezone(timedelta(seconds=37)))
        ),
        make_usage_event(occurred_at=datetime(2026, 3, 10, 1, 2, 3, 4)),
        events.UsageRecorded.model_validate_json(
            make_usage_event().to_bytes().replace(b'Z"', b'+00:00"')
        ),
    ]
    for event in cases:
        for period in ("lifetime", "d2026-03-10"):
            cost = charge(event, prices)
            assert bill_for(event, period, cost) == Bill.of(billing_record(event, period, cost))


def test_billing_headers_are_encoded_as_nats_py_does() -> None:
    assert billing_headers(" bill-a\r\nb\n ") == (
        b"NATS/1.0\r\nArks-Event-Type: BillingRecord\r\nArks-Event-Version: 1\r\n"
        b"Nats-Msg-Id: bill-a  b\r\n\r\n"
    )


async def test_ledger_writes_over_the_wire_are_compare_and_set(bus, nats_server):
    account = keys.Account("default", "basic-quota")

    def snapshot(version: int) -> Snapshot:
        return Snapshot(
            1, version, {"ver": str(version)}, {"lane": LaneMarkers({"r": "lifetime||0"}, 1)}, {}
        )

    async with connected_wire(nats_server.url) as wire:
        first = LedgerRecorder(bus, publisher=JetStreamPublisher(wire, timeout=5))
        second = LedgerRecorder(bus, publisher=JetStreamPublisher(wire, timeout=5))
        assert await first.record(account, snapshot(1))
        assert await second.record(account, snapshot(2))
        assert await first.record(account, snapshot(3))  # its cached revision is stale
        assert first.conflicts == 1
    stored = await first.read(account.ledger_key)
    assert stored is not None
    assert stored[1].version == 3
    assert stored[1].fields == {"ver": "3"}
