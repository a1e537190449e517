"""Following the durable consumer's ack floor, which prunes in-flight markers.

Every message at or below the ack floor of the `arks-accountant` consumer is acked and
can never be delivered again, so the ledger writes drop in-flight marker sets whose
messages the floor passed (`LedgerRecorder.ack_floor`). It is read every
`ledger.ack_floor_interval`.

A floor read over a connection that was lost meanwhile is not used (after a NATS
restart that lost its data the stream's sequences start again; the old floor would
drop markers of new, un-acked messages): the floor is unknown (0) until read again on
the connection the ledger writes go over. Failure modes: a failed read leaves the
floor unknown until the next one (logged at debug level); nothing raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats.errors

from arks_accountant.recording import LedgerRecorder
from arks_accountant.wire import Wire
from arks_common import subjects
from arks_common.messaging import Bus

log = logging.getLogger(__name__)


async def follow_ack_floor(
    bus: Bus, wire: Wire, recorder: LedgerRecorder, interval: float, stop: asyncio.Event
) -> None:
    """Keep `recorder.ack_floor` at the durable consumer's ack floor until `stop`."""

    def forget() -> None:
        recorder.ack_floor = 0

    wire.on_lost(forget)
    try:
        while not stop.is_set():
            generation = wire.generation
            floor = 0
            try:
                info = await bus.js.consumer_info(
                    subjects.USAGE_STREAM, subjects.ACCOUNTANT_CONSUMER
                )
                floor = info.ack_floor.stream_seq if info.ack_floor else 0
            except (nats.errors.Error, OSError, TimeoutError) as exc:
                log.debug("cannot read the consumer's ack floor: %r", exc)
            if wire.generation != generation or not wire.connected:
                floor = 0
            recorder.ack_floor = floor or 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
    finally:
        wire.off_lost(forget)
