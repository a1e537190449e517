"""Billing records onto JetStream, many in flight at once, each confirmed by the stream.

A record's `Nats-Msg-Id` is `bill-<request id>`, so publishing it again (after a crash,
a redelivery) is dropped by the stream's duplicate window; billing systems should still
deduplicate by `id` beyond that window (docs/billing.md). A record the stream does not
confirm within the timeout counts as not published: its usage event is redelivered and
the record published again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import nats.errors
from nats.js.api import PubAck

from arks_common import events, subjects
from arks_common.messaging import Bus

log = logging.getLogger(__name__)


class BillingPublisher:
    def __init__(self, bus: Bus, *, timeout: float) -> None:
        self._bus = bus
        self._timeout = timeout

    async def publish(self, records: Sequence[events.BillingRecord]) -> list[bool]:
        """Publish every record; per record, whether JetStream stored it (or had it already)."""
        futures: list[asyncio.Future[PubAck] | None] = []
        for record in records:
            futures.append(await self._start(record))
        pending = [f for f in futures if f is not None]
        if pending:
            _, late = await asyncio.wait(pending, timeout=self._timeout)
            for unconfirmed in late:
                unconfirmed.cancel()
        results = [_stored(record, f) for record, f in zip(records, futures, strict=True)]
        return results

    async def _start(self, record: events.BillingRecord) -> asyncio.Future[PubAck] | None:
        subject = subjects.billing_subject(
            record.namespace, quota=record.quota, token_name=record.token_name
        )
        try:
            return await self._bus.js.publish_async(
                subject, record.to_bytes(), headers=record.headers(), wait_stall=self._timeout
            )
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            log.warning("billing publish of %s failed: %s", record.id, exc)
            return None


def _stored(record: events.BillingRecord, future: asyncio.Future[PubAck] | None) -> bool:
    if future is None or future.cancelled():
        return False
    if future.exception() is not None:
        log.warning("billing record %s not stored: %s", record.id, future.exception())
        return False
    return True
