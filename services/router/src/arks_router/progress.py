"""Open streams' delivered tokens, journaled as they go, so a router crash still bills them.

A request's usage event is made when it ends; a router killed mid-stream would leave no
trace of the tokens its client had already received. So while a stream is open,
`StreamProgress.run()` writes a *progress record* for it into the usage journal every
`usage.progress_interval` seconds when it delivered something new: the `UsageRecorded`
that should stand if the router died now — the request's id, outcome `interrupted`, the
prompt estimate plus one completion token per content chunk forwarded
(`usage_source="estimated"`; the engine's own usage if it already arrived). It is not
published: the record lives in the journal, a page-cache append made off the request
path (a request only adds and removes its entry here).

Exactly once, per request id — the final event beats a progress record:

1. Only the next owner of a dead process's spool slot publishes progress records (the
   slot's flock says the writer is gone: no final event can come from it any more but
   those its spool and journal hold).
2. The final event is journaled before the request's progress record may be dropped
   (`UsagePublisher.record`), so a crash leaves at least one of the two.
3. `supersede()` reads what the dead process left: a final event drops every progress
   record of its id, and of several progress records the latest stands. The slot's
   spool (older events) is replayed before what the journal held.
4. Both carry the request id as `Nats-Msg-Id`: ARKS_USAGE drops the second one to
   arrive within its duplicate window, the accountant's done-marker beyond it. By 1-3
   the first to arrive is the final event whenever one was made durable (published,
   spooled or journaled), so a progress record is never counted beside a final event
   and never shadows one.

What a crash bills is what the client was sent up to the last record (at most
`progress_interval` behind), with the prompt estimated; the reservation is released by
the settlement of that record or, earlier, by the router's lapsed lease.

Failure modes: a record that cannot be written (disk full) is counted in
`arks_router_usage_unjournaled_total` and the stream goes on; the previous record, if
any, still stands.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from arks_common import subjects
from arks_common.events import Outcome, UsageRecorded
from arks_router.exchanges import Exchange, UsageSource
from arks_router.metering import StreamMeter, Usage

if TYPE_CHECKING:
    from arks_router.publishing import UsagePublisher

EventOf = Callable[[Exchange, Usage, UsageSource, Outcome, float], UsageRecorded]
"""(exchange, usage, usage source, outcome, end time) -> the request's usage event"""

_CHUNK = 200
"""Streams journaled between two yields to the event loop."""


@dataclass(slots=True)
class _Open:
    ex: Exchange
    meter: StreamMeter
    journaled: tuple[int, Usage | None] = (0, None)
    """What the last progress record counted: content chunks, the engine's usage."""


class StreamProgress:
    def __init__(self, publisher: UsagePublisher, event_of: EventOf, interval: float) -> None:
        self._publisher = publisher
        self._event_of = event_of
        self._interval = interval
        self._open: dict[str, _Open] = {}

    def opened(self, ex: Exchange, meter: StreamMeter) -> None:
        self._open[ex.request_id] = _Open(ex, meter)

    def closed(self, request_id: str) -> None:
        self._open.pop(request_id, None)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
            await self.journal()

    async def journal(self) -> int:
        """Write a progress record of every stream that delivered more since its last one."""
        written = 0
        entries = list(self._open.items())
        for start in range(0, len(entries), _CHUNK):
            if start:
                await asyncio.sleep(0)
            now = time.perf_counter()
            for request_id, entry in entries[start : start + _CHUNK]:
                # closed meanwhile: its final event is journaled, a progress record now
                # would only hold its journal segment open
                if self._open.get(request_id) is not entry:
                    continue
                ex, meter = entry.ex, entry.meter
                source: UsageSource
                stamp = (meter.content_events, meter.usage)
                if stamp == entry.journaled or ex.endpoint is None:
                    continue
                usage, source = meter.usage, "engine"
                if usage is None:
                    usage, source = Usage(ex.estimate.prompt_tokens, stamp[0]), "estimated"
                event = self._event_of(ex, usage, source, Outcome.INTERRUPTED, now)
                subject = subjects.usage_subject(ex.namespace, ex.endpoint.name)
                self._publisher.progress(subject, event)
                entry.journaled = stamp
                written += 1
        return written


def supersede(records: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """What a dead process's journal leaves to publish: its final events in order, then
    the latest progress record of each request that has no final event there."""
    finals: list[tuple[str, bytes]] = []
    final_ids: set[str] = set()
    latest: dict[str, tuple[str, bytes]] = {}
    for subject, data in records:
        request_id, outcome = _identity(data)
        if request_id is not None and outcome == Outcome.INTERRUPTED.value:
            latest.pop(request_id, None)  # keep the order of the last ones
            latest[request_id] = (subject, data)
            continue
        finals.append((subject, data))
        if request_id is not None:
            final_ids.add(request_id)
    return finals + [record for rid, record in latest.items() if rid not in final_ids]


def _identity(data: bytes) -> tuple[str | None, str | None]:
    """(id, outcome) of an encoded usage event; Nones when it does not decode (it is
    then passed on as is, and dropped with a log line when replayed)."""
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(payload, dict):
        return None, None
    ident, outcome = payload.get("id"), payload.get("outcome")
    return (
        ident if isinstance(ident, str) else None,
        outcome if isinstance(outcome, str) else None,
    )
