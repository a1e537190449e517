"""Billing publishes confirmed by the stream, duplicates included."""

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
    assert await publisher.publish(batch) == [True] * 40
    assert await publisher.publish(batch[:10]) == [True] * 10  # duplicates are stored already
    assert await stream_messages(bus, subjects.BILLING_STREAM) == 40
