"""Billing records onto JetStream: a whole batch in flight at once, each one confirmed.

Every record goes out as a plain publish with its own reply subject under one inbox this
process subscribes to once; JetStream answers each with a PubAck (or an error), so the
batch costs one socket write and one reply per record rather than a request round trip
each. A record's `Nats-Msg-Id` is `bill-<request id>`: publishing it again after a crash
or a redelivery is dropped by the stream's duplicate window (billing systems should
still deduplicate by `id` beyond that window, docs/billing.md). A record that is not
confirmed within the timeout counts as not published; its usage event is redelivered
and the record published again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import nats.errors
import orjson
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from arks_common import events, subjects
from arks_common.messaging import Bus

log = logging.getLogger(__name__)

_STATUS_HEADER = "Status"


@dataclass
class _Batch:
    results: list[bool]
    remaining: int
    done: asyncio.Event = field(default_factory=asyncio.Event)
    tokens: list[str] = field(default_factory=list)

    def settle(self, index: int, ok: bool) -> None:
        self.results[index] = ok
        self.remaining -= 1
        if self.remaining <= 0:
            self.done.set()


class BillingPublisher:
    def __init__(self, bus: Bus, *, timeout: float) -> None:
        self._bus = bus
        self._timeout = timeout
        self._prefix = ""
        self._sub: Subscription | None = None
        self._tokens = itertools.count()
        self._waiting: dict[str, tuple[_Batch, int]] = {}

    async def publish(self, records: Sequence[events.BillingRecord]) -> list[bool]:
        """Publish every record; per record, whether JetStream stored it (or had it already)."""
        if not records:
            return []
        await self._subscribe()
        batch = _Batch([False] * len(records), len(records))
        nc = self._bus.nc
        for index, record in enumerate(records):
            token = str(next(self._tokens))
            self._waiting[token] = (batch, index)
            batch.tokens.append(token)
            subject = subjects.billing_subject(
                record.namespace, quota=record.quota, token_name=record.token_name
            )
            try:
                await nc.publish(
                    subject,
                    record.to_bytes(),
                    reply=f"{self._prefix}.{token}",
                    headers=record.headers(),
                )
            except (nats.errors.Error, OSError) as exc:
                log.warning("billing publish of %s failed: %s", record.id, exc)
                self._waiting.pop(token, None)
                batch.settle(index, False)
        try:
            async with asyncio.timeout(self._timeout):
                await batch.done.wait()
        except TimeoutError:
            log.warning("%d billing records not confirmed in time", batch.remaining)
        finally:
            for token in batch.tokens:
                self._waiting.pop(token, None)
        return batch.results

    async def _subscribe(self) -> None:
        if self._sub is None:
            self._prefix = self._bus.nc.new_inbox()
            self._sub = await self._bus.nc.subscribe(f"{self._prefix}.*", cb=self._on_reply)

    async def _on_reply(self, msg: Msg) -> None:
        token = msg.subject[len(self._prefix) + 1 :]
        waiting = self._waiting.pop(token, None)
        if waiting is None:
            return  # the batch gave up on it already
        batch, index = waiting
        batch.settle(index, _stored(msg))


def _stored(reply: Msg) -> bool:
    """Whether a JetStream reply is a PubAck (a duplicate counts: it is stored already)."""
    if reply.headers and reply.headers.get(_STATUS_HEADER):
        log.warning("billing publish got status %s", reply.headers.get(_STATUS_HEADER))
        return False
    try:
        answer = orjson.loads(reply.data)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(answer, dict) or "error" in answer:
        log.warning("billing record not stored: %s", answer)
        return False
    return "stream" in answer
