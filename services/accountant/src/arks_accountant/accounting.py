"""The accountant's core: settle a fetched batch of usage events, exactly once each.

This module runs the stages of a batch in order; each stage reads on its own:

1. decode, validate and price every message (`decoding`; what cannot be read is
   dead-lettered with the reason);
2. settle the batch in one SETTLE call (`settling`: idempotent by request id, releases
   reservations, decides exhaustion notices) — held here through outages;
3. note the batch's done-markers per account (`lanes.BatchMarkers`);
4. record every account touched in the durable ledger with the lane's in-flight markers
   (`snapshots`);
5. bill: one BillingRecord per event, again for duplicates, priced as its done-marker
   says (`billing`; the stream deduplicates by id);
6. announce the quota notices SETTLE decided (`announcing`);
7. return each message's disposition (`dispositions`) — the consumer lane acks after
   the handler returns — and keep the batch's markers until its acks are confirmed
   (`lanes.Lane`).

A crash anywhere before 7 leaves the messages un-acked; they are redelivered and found
applied (step 2 is then a no-op that still returns the marker), so counters never count
twice and billing is re-published identically. While Valkey or NATS is unavailable the
batch is held (with in-progress acks so it is not redelivered elsewhere) and retried;
stopping the service turns it into Naks. An event whose ledger write lost to a restore
(its apply may be gone with Valkey's data) is Nak'ed and applied again after the restore.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime

import redis.asyncio as aioredis
import redis.exceptions

from arks_accountant import keys
from arks_accountant.ack_floor import follow_ack_floor
from arks_accountant.announcing import Announcer
from arks_accountant.billing import Biller
from arks_accountant.decoding import Decoder
from arks_accountant.deliveries import Delivery
from arks_accountant.dispositions import dispositions
from arks_accountant.fetch_limit import FetchLimit
from arks_accountant.lanes import BatchMarkers, Lane
from arks_accountant.metrics import Metrics
from arks_accountant.notifying import Notifier
from arks_accountant.pricing import PriceList
from arks_accountant.publishing import BillingPublisher, JetStreamPublisher
from arks_accountant.recording import LedgerRecorder
from arks_accountant.restoring import Restored, Restorer
from arks_accountant.settings import AccountantSettings
from arks_accountant.settling import (
    AccountTerms,
    EpochMismatch,
    PricedEvent,
    SettleOutcome,
    Settler,
)
from arks_accountant.snapshots import SnapshotWriter
from arks_accountant.specs import QuotaRef, QuotaSpecs
from arks_accountant.wire import Wire, WireDown
from arks_common.errors import RetryableError
from arks_common.events import utcnow
from arks_common.messaging import Ack, Bus, DeadLetter, Disposition

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

_TRANSIENT_REPLIES = ("OOM", "BUSY", "LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "NOREPLICAS")
_IN_PROGRESS = b"+WPI"
_EVALUATE_CHUNK = 200


def _transient(exc: redis.exceptions.ResponseError) -> bool:
    return str(exc).startswith(_TRANSIENT_REPLIES)


class Accountant:
    """Settles usage batches and re-evaluates quotas; owns the clients' accountant-side state.

    `handler(lane)` is what a consumer lane runs; `evaluate()` re-decides exhaustion when a
    spec changes or a period rolls over; `epoch()` is the restore gate every Valkey write
    of the accountant passes.
    """

    def __init__(
        self,
        *,
        bus: Bus,
        wire: Wire,
        redis: aioredis.Redis,
        settings: AccountantSettings,
        specs: QuotaSpecs,
        metrics: Metrics,
        stop: asyncio.Event,
        clock: Clock = utcnow,
    ) -> None:
        self._bus = bus
        self._wire = wire
        self._redis = redis
        self._settings = settings
        self.specs = specs
        self._metrics = metrics
        self._stop = stop
        self._clock = clock
        self.settler = Settler(redis)
        streams = JetStreamPublisher(wire, timeout=settings.publish_timeout)
        self.recorder = LedgerRecorder(
            bus,
            keep_lanes=settings.ledger.inflight_lanes,
            publisher=streams,
            entry_budget=self.entry_budget,
            observe_size=metrics.ledger_entry_bytes.observe,
        )
        self.restorer = Restorer(
            redis, self.recorder, lock_seconds=settings.ledger.restore_lock_seconds, stop=stop
        )
        self.notifier = Notifier(bus, metrics.notices)
        self._decoder = Decoder(
            specs, unknown_quota_retries=settings.consumer.unknown_quota_retries
        )
        self._snapshots = SnapshotWriter(self.recorder, self.restorer, metrics.ledger_conflicts)
        self._biller = Biller(redis, BillingPublisher(streams))
        self._announcer = Announcer(self.notifier, specs, metrics.restores)
        self._fetch_limit = FetchLimit(
            settings.consumer.batch, lambda: self.recorder.over_budget, metrics.fetch_limit
        )
        self._lanes: dict[int, Lane] = {}

    def now(self) -> datetime:
        return self._clock()

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis

    @property
    def seen_quotas(self) -> set[QuotaRef]:
        """Quotas named by events this process decoded (swept even without a spec)."""
        return self._decoder.seen_quotas

    # ------------------------------------------------------------------ epoch
    async def epoch(self) -> int:
        """The epoch Valkey holds, restoring it from the ledger first if needed."""
        if self.restorer.epoch is None:
            restored = await self.restorer.ensure()
            if restored is not None:
                await self.announce_restored(restored)
        epoch = self.restorer.epoch
        if epoch is None:
            raise RetryableError("valkey is being restored", delay=0.2)
        return epoch

    async def announce_restored(self, restored: Restored) -> None:
        await self._announcer.restored(restored)

    # ------------------------------------------------------------------ lanes
    def lane(self, index: int = 0) -> Lane:
        """The lane `index` of this process (created on first use)."""
        if index not in self._lanes:
            self._lanes[index] = Lane(f"{self._settings.instance_id}/{index}")
        return self._lanes[index]

    def handler(
        self, lane: Lane
    ) -> Callable[[Sequence[Delivery]], Awaitable[Sequence[Disposition]]]:
        """A batch handler for a consumer lane (`consuming.consume_lane`) settling in `lane`."""

        async def handle(batch: Sequence[Delivery]) -> Sequence[Disposition]:
            return await self.handle_batch(batch, lane)

        return handle

    def batch_size(self) -> int:
        """How many messages a lane should fetch next (see `fetch_limit`)."""
        return self._fetch_limit.size()

    def entry_budget(self) -> int:
        """Bytes a ledger entry should stay under (`ledger.entry_budget`, else half the
        server's max_payload)."""
        return self._settings.ledger.entry_budget or self._wire.max_payload // 2

    async def follow_ack_floor(self, stop: asyncio.Event) -> None:
        """Keep `recorder.ack_floor` at the durable consumer's (see `ack_floor`)."""
        interval = self._settings.ledger.ack_floor_interval
        await follow_ack_floor(self._bus, self._wire, self.recorder, interval, stop)

    # ------------------------------------------------------------------ batches
    async def handle_batch(
        self, batch: Sequence[Delivery], lane: Lane | None = None
    ) -> Sequence[Disposition]:
        started = time.perf_counter()
        lane = lane or self.lane()
        lane.start_batch(self.recorder.ack_floor, self._settings.ledger.unconfirmed_batches)
        out: list[Disposition] = [Ack()] * len(batch)
        priced: list[PricedEvent] = []
        where: list[int] = []
        decode = self._decoder.decode
        for i, msg in enumerate(batch):
            result = decode(msg)
            if isinstance(result, PricedEvent):
                priced.append(result)
                where.append(i)
            else:
                out[i] = result
                label = "dead_letter" if isinstance(result, DeadLetter) else "retry"
                self._metrics.events.labels(label).inc()
        self._metrics.phases.labels("decode").observe(time.perf_counter() - started)
        if priced:
            settled = await self._settle_holding(batch, priced, lane)
            for i, disposition in zip(where, settled, strict=True):
                out[i] = disposition
        elapsed = time.perf_counter() - started
        self._metrics.batches.observe(elapsed)
        log.debug("settled a batch of %d in %.1f ms", len(batch), elapsed * 1000)
        return out

    async def _settle_holding(
        self, batch: Sequence[Delivery], priced: list[PricedEvent], lane: Lane
    ) -> list[Disposition]:
        """Settle, holding the batch through Valkey/NATS outages (in-progress acks)."""
        delay = 0.05
        last_progress = time.monotonic()
        while True:
            try:
                return await self._settle(priced, lane)
            except RetryableError as exc:
                if self._stop.is_set():
                    raise
                log.warning("holding a batch of %d: %s", len(batch), exc.message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(delay * 2, 2.0)
            if time.monotonic() - last_progress > self._settings.consumer.ack_wait / 3:
                last_progress = time.monotonic()
                with contextlib.suppress(WireDown):
                    for msg in batch:
                        self._wire.publish(msg.reply, _IN_PROGRESS)

    async def _settle(self, priced: list[PricedEvent], lane: Lane) -> list[Disposition]:
        now = self._clock()
        epoch = await self.epoch()
        terms = self._terms([p.account for p in priced], now)
        started = time.perf_counter()
        try:
            outcome = await self.settler.settle(epoch, terms, priced)
        except EpochMismatch as exc:
            self.restorer.epoch = None
            raise RetryableError(f"valkey epoch changed ({exc.current!r})", delay=0.0) from exc
        except redis.exceptions.ResponseError as exc:
            if _transient(exc):
                raise RetryableError(f"valkey refused: {exc}") from exc
            if len(priced) == 1:
                return [DeadLetter(f"settlement of {priced[0].event.id} failed: {exc}")]
            log.warning("settlement of a batch failed (%s); settling its events one by one", exc)
            out: list[Disposition] = []
            for one in priced:
                out.extend(await self._settle([one], lane))
            return out
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise RetryableError(f"valkey unavailable: {exc}") from exc
        self._metrics.phases.labels("settle").observe(time.perf_counter() - started)
        return await self._conclude(epoch, terms, priced, outcome, lane)

    def _terms(self, accounts: Iterable[keys.Account], now: datetime) -> list[AccountTerms]:
        unique = dict.fromkeys(accounts)
        return [
            AccountTerms(a, self.specs.get(a.namespace, a.quota) if a.quota else None, now)
            for a in unique
        ]

    @staticmethod
    def _prices(terms: Iterable[AccountTerms]) -> dict[keys.Account, dict[str, PriceList]]:
        """The current price list of every quota account, by price version."""
        prices: dict[keys.Account, dict[str, PriceList]] = defaultdict(dict)
        for term in terms:
            if term.spec is not None and term.account.quota:
                prices[term.account][term.spec.price_version] = PriceList.of(term.spec)
        return prices

    async def _conclude(
        self,
        epoch: int,
        terms: list[AccountTerms],
        priced: list[PricedEvent],
        outcome: SettleOutcome,
        lane: Lane,
    ) -> list[Disposition]:
        """Stages 3 to 7 for a settled batch."""
        prices = self._prices(terms)
        markers = BatchMarkers.of(priced, outcome.previous)
        records = await self._biller.records(priced, outcome.previous, prices)
        self._metrics.events.labels("applied").inc(markers.applied)
        self._metrics.events.labels("duplicate").inc(len(priced) - markers.applied)
        phase = self._metrics.phases
        started = time.perf_counter()
        recorded = await self._snapshots.write(epoch, outcome.accounts, prices, (lane, markers))
        phase.labels("record").observe(time.perf_counter() - started)
        started = time.perf_counter()
        billed = await self._biller.publish(priced, records, recorded)
        phase.labels("bill").observe(time.perf_counter() - started)
        self._metrics.billing_failures.inc(sum(1 for ok in billed.values() if not ok))
        for account_outcome in outcome.accounts:
            if account_outcome.notice and recorded[account_outcome.account]:
                await self._announcer.changed(account_outcome, terms)
        out, held = dispositions(priced, records, recorded, billed, markers)
        lane.settled(markers, recorded, held)
        return out

    # ------------------------------------------------------------------ evaluation
    async def evaluate(self, refs: Iterable[QuotaRef], reason: str) -> None:
        """Re-decide the exhaustion state of quotas (limit changed, period rolled over)."""
        now = self._clock()
        accounts = [
            keys.Account(ns, name) for ns, name in refs if self.specs.get(ns, name) is not None
        ]
        for start in range(0, len(accounts), _EVALUATE_CHUNK):
            terms = self._terms(accounts[start : start + _EVALUATE_CHUNK], now)
            epoch = await self.epoch()
            try:
                outcome = await self.settler.settle(epoch, terms, [], change_reason=reason)
            except EpochMismatch as exc:
                self.restorer.epoch = None
                raise RetryableError("valkey epoch changed during evaluation") from exc
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                raise RetryableError(f"valkey unavailable: {exc}") from exc
            prices = {
                t.account: {t.spec.price_version: PriceList.of(t.spec)} for t in terms if t.spec
            }
            recorded = await self._snapshots.write(epoch, outcome.accounts, prices, None)
            for account_outcome in outcome.accounts:
                if account_outcome.notice and recorded[account_outcome.account]:
                    await self._announcer.changed(account_outcome, terms)
