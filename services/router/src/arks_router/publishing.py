"""Usage events to JetStream, never lost: publish live, spool when NATS is away.

Requests hand their `UsageRecorded` to `record()`, which never blocks or fails. One
task (`run`) publishes them in batches (concurrently, each awaiting its stream ack,
with `Nats-Msg-Id` = request id). Events go to the durable spool instead when NATS is
disconnected, when a publish is not acknowledged in time, or while older events are
still spooled (so replay keeps the original order). When NATS is back the spool is
replayed in order, oldest first, advancing its cursor only over acknowledged records;
what was published twice (an ack lost, a crash before the cursor moved) is dropped by
the stream's duplicate window and, beyond it, by the accountant's per-request marker.

Every event is journaled (`arks_router.journaling`) before it waits in memory, and its
journal record is dropped once it is acked or spooled: a process killed with events in
memory leaves them in its slot's journal, and the next process to take the slot spools
and replays them. Open streams' progress records (`progress()`) go to the same journal
and nowhere else: they are published only by that next process, for requests whose
final event the journal does not hold (`progress.supersede`). At shutdown `close()`
publishes what is left within a deadline and spools the rest; a spool left by a
previous process is replayed after the next start.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time

from arks_common.errors import RetryableError
from arks_common.events import UsageRecorded
from arks_common.messaging import Bus
from arks_router import progress
from arks_router.journaling import Journal
from arks_router.metrics import RouterMetrics
from arks_router.settings import UsageSettings
from arks_router.spooling import Spool, SpoolRecord

log = logging.getLogger(__name__)

Pending = tuple[str, UsageRecorded, bytes, int | None]
"""(subject, event, its encoding, journal segment)"""


class UsagePublisher:
    def __init__(
        self,
        bus: Bus,
        spool: Spool,
        settings: UsageSettings,
        metrics: RouterMetrics,
        journal: Journal | None = None,
    ) -> None:
        self._bus = bus
        self._spool = spool
        self._journal = journal or Journal(spool.directory)
        self._settings = settings
        self._metrics = metrics
        self._pending: collections.deque[Pending] = collections.deque()
        self._wakeup = asyncio.Event()

    # ------------------------------------------------------------------ producers
    def record(self, subject: str, event: UsageRecorded) -> None:
        data = event.to_bytes()
        segment = self._journal.write(subject, data)
        if segment is None:
            self._metrics.usage_unjournaled.inc()
        # only now, with the final event journaled, may the request's progress record go
        self._journal.drop_progress(event.id)
        self._pending.append((subject, event, data, segment))
        self._wakeup.set()

    def progress(self, subject: str, event: UsageRecorded) -> None:
        """Journal an open request's usage so far; published only if this process dies."""
        if not self._journal.write_progress(event.id, subject, event.to_bytes()):
            self._metrics.usage_unjournaled.inc()

    @property
    def backlog(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------------ the task
    async def open(self) -> None:
        await asyncio.to_thread(self._spool.open)
        assert self._spool.slot is not None
        left = progress.supersede(await asyncio.to_thread(self._journal.open, self._spool.slot))
        if left:
            # a process of this slot died with events in memory: replay them from the spool
            await asyncio.to_thread(self._spool.append, left)
            self._metrics.usage_spooled.inc(len(left))
        await asyncio.to_thread(self._journal.discard_leftovers)
        self._metrics.spool_pending.set(self._spool.pending_bytes)

    async def run(self, stop: asyncio.Event) -> None:
        stopping = asyncio.create_task(stop.wait(), name="usage-publisher:stop")
        try:
            while not stop.is_set():
                timeout = self._settings.replay_interval if self._spool.pending else None
                waking = asyncio.create_task(self._wakeup.wait(), name="usage-publisher:wake")
                try:
                    await asyncio.wait(
                        {waking, stopping}, timeout=timeout, return_when="FIRST_COMPLETED"
                    )
                finally:
                    waking.cancel()
                self._wakeup.clear()
                await self._pump()
        finally:
            stopping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopping

    async def close(self, deadline: float) -> None:
        """Publish or spool everything still pending, then release the spool."""
        until = time.monotonic() + deadline
        while self._pending and time.monotonic() < until and self._bus.connected:
            if not await self._publish_batch():
                break
        if self._pending:
            await self._spill(len(self._pending))
        self._journal.close()
        await asyncio.to_thread(self._spool.close)

    # ------------------------------------------------------------------ internals
    async def _pump(self) -> None:
        while self._pending:
            if self._spool.pending or not self._bus.connected:
                await self._spill(len(self._pending))
                break
            if not await self._publish_batch():
                break
        if len(self._pending) > self._settings.queue_size:
            await self._spill(len(self._pending))
        if self._spool.pending and self._bus.connected:
            await self._replay()

    def _take(self, count: int) -> list[Pending]:
        return [self._pending.popleft() for _ in range(min(count, len(self._pending)))]

    async def _publish_batch(self) -> bool:
        """Publish one batch; failed events go to the spool. True when all were acked."""
        batch = self._take(self._settings.batch_size)
        results = await asyncio.gather(
            *(self._publish(subject, event, data) for subject, event, data, _ in batch)
        )
        failed = [item for item, ok in zip(batch, results, strict=True) if not ok]
        self._metrics.usage_published.labels("live").inc(len(batch) - len(failed))
        for (_, _, _, segment), ok in zip(batch, results, strict=True):
            if ok:
                self._journal.done(segment)
        if failed:
            await self._write_spool(failed)
            return False
        return True

    async def _publish(self, subject: str, event: UsageRecorded, data: bytes) -> bool:
        try:
            await self._bus.publish(
                subject, event, ack_timeout=self._settings.publish_timeout, payload=data
            )
        except RetryableError as exc:
            log.warning("usage event %s not acknowledged (%s): spooling", event.id, exc)
            return False
        return True

    async def _spill(self, count: int) -> None:
        await self._write_spool(self._take(count))

    async def _write_spool(self, items: list[Pending]) -> None:
        if not items:
            return
        records = [(subject, data) for subject, _, data, _ in items]
        await asyncio.to_thread(self._spool.append, records)
        for _, _, _, segment in items:
            self._journal.done(segment)
        self._metrics.usage_spooled.inc(len(records))
        self._metrics.spool_pending.set(self._spool.pending_bytes)

    async def _replay(self) -> None:
        """Replay spooled records in order until the spool is empty or a publish fails."""
        while self._spool.pending and self._bus.connected:
            records = await asyncio.to_thread(self._spool.read, self._settings.batch_size)
            if not records:
                break
            acked = await self._replay_batch(records)
            if acked:
                await asyncio.to_thread(self._spool.advance, acked[-1].end)
                self._metrics.usage_published.labels("replay").inc(len(acked))
            self._metrics.spool_pending.set(self._spool.pending_bytes)
            if len(acked) < len(records):
                return
            if self._pending:
                # Keep the order: what arrived meanwhile goes behind the spooled events.
                await self._spill(len(self._pending))

    async def _replay_one(self, record: SpoolRecord) -> bool:
        try:
            event = UsageRecorded.from_bytes(record.data)
        except ValueError as exc:
            # It can never be published; keeping it would block the spool forever.
            log.error("dropping an undecodable spooled usage record: %s", exc)
            return True
        return await self._publish(record.subject, event, record.data)

    async def _replay_batch(self, records: list[SpoolRecord]) -> list[SpoolRecord]:
        """The acknowledged prefix of `records`."""
        results = await asyncio.gather(*(self._replay_one(record) for record in records))
        acked: list[SpoolRecord] = []
        for record, ok in zip(records, results, strict=True):
            if not ok:
                break
            acked.append(record)
        if len(acked) == len(records):
            log.info("replayed %d spooled usage events", len(acked))
        return acked
