"""Billing publishes confirmed by the stream, per record or in atomic batches."""

from __future__ import annotations

from arks_accountant.pricing import UNPRICED, billing_record, charge
from arks_accountant.publishing import BillingPublisher
from arks_accountant.testing import stream_messages
from arks_common import subjects
from arks_common.testing.builders import make_usage_event


def records(n: int):
    out = []
    for _ in range(n):
        event = make_usage_event()
        out.append(billing_record(event, "lifetime", charge(event, UNPRICED)))
    return out


async def test_per_record_publish_is_confirmed_and_deduplicated(bus):
    publisher = BillingPublisher(bus, timeout=5)
    batch = records(40)
    assert await publisher.publish(batch, [True] * 40) == [True] * 40
    assert await publisher.publish(batch[:10]) == [True] * 10  # duplicates are stored already
    assert publisher.atomic_batches == 0
    assert await stream_messages(bus, subjects.BILLING_STREAM) == 40


async def test_atomic_batches_when_the_stream_allows_them(bus):
    info = await bus.js.stream_info(subjects.BILLING_STREAM)
    config = info.config
    config.allow_atomic = True
    await bus.js.update_stream(config)
    publisher = BillingPublisher(bus, timeout=5)
    first = records(1200)
    assert await publisher.publish(first, [True] * 1200) == [True] * 1200
    assert publisher.atomic_batches == 2  # at most 1000 records per batch
    assert await stream_messages(bus, subjects.BILLING_STREAM) == 1200
    # a batch holding a record the stream has already is refused whole: sent one by one
    again = [*first[:5], *records(20)]
    assert await publisher.publish(again, [True] * 25) == [True] * 25
    assert await stream_messages(bus, subjects.BILLING_STREAM) == 1220
