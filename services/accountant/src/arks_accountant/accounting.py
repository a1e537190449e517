"""The accountant's core: settle a fetched batch of usage events, exactly once each.

For each batch: decode and validate every message (a message that cannot be read is
dead-lettered with the reason), price it, then

1. apply the batch in one SETTLE call (idempotent by request id, releases reservations,
   decides exhaustion notices);
2. write the durable ledger entry of every account touched, with the done-markers of the
   batch (and of earlier batches whose acks may not have reached NATS);
3. publish one BillingRecord per event (again for duplicates: the earlier publish may
   have been lost; the stream deduplicates by id), priced as its done-marker says;
4. announce the quota notices SETTLE decided;
5. return Ack per event — the consumer lane acks after the handler returns.

A crash anywhere before 5 leaves the messages un-acked; they are redelivered and found
applied (step 1 is then a no-op that still returns the marker), so counters never count
twice and billing is re-published identically. While Valkey or NATS is unavailable the
batch is held (with in-progress acks so it is not redelivered elsewhere) and retried;
stopping the service turns it into Naks. An event whose ledger write lost to a restore
(its apply may be gone with Valkey's data) is Nak'ed and applied again after the restore.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import nats.errors
import redis.asyncio as aioredis
import redis.exceptions

from arks_accountant import keys
from arks_accountant.deliveries import Delivery
from arks_accountant.metrics import Metrics
from arks_accountant.notifying import Notifier, as_reason, state_event
from arks_accountant.pricing import UNPRICED, Charge, PriceList, bill_for, charge
from arks_accountant.publishing import Bill, BillingPublisher, JetStreamPublisher
from arks_accountant.recording import LaneMarkers, LedgerRecorder, Snapshot
from arks_accountant.restoring import Restored, Restorer
from arks_accountant.settings import AccountantSettings
from arks_accountant.settling import (
    AccountOutcome,
    AccountTerms,
    EpochMismatch,
    Marker,
    PricedEvent,
    SettleOutcome,
    Settler,
    limits_of,
)
from arks_accountant.specs import QuotaRef, QuotaSpecs
from arks_accountant.wire import Wire, WireDown
from arks_common import events, ledger, subjects
from arks_common.errors import PermanentError, RetryableError
from arks_common.events import utcnow
from arks_common.messaging import Ack, Bus, DeadLetter, Disposition, Nak

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

_PERIOD_RE = re.compile(r"^(lifetime|d\d{4}-\d{2}-\d{2}|m\d{4}-\d{2})$")
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_TRANSIENT_REPLIES = ("OOM", "BUSY", "LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "NOREPLICAS")
_TYPE_HEADER = events.TYPE_HEADER.encode()
_IN_PROGRESS = b"+WPI"
_ACK = Ack()
_EVALUATE_CHUNK = 200
_GROW_AFTER = 1.0


def invalid_reason(event: events.UsageRecorded) -> str | None:
    """Why an event cannot be accounted (dead-letter reason), or None."""
    names = (event.namespace, event.token_name, event.endpoint, event.quota)
    if names in _VALID_NAMES and (
        not event.quota or not event.quota_period or event.quota_period in _VALID_PERIODS
    ):
        return None
    problem = _check(event)
    if problem is None:
        if len(_VALID_NAMES) > 10_000:
            _VALID_NAMES.clear()
            _VALID_PERIODS.clear()
        _VALID_NAMES.add(names)
        if event.quota_period:
            _VALID_PERIODS.add(event.quota_period)
    return problem


_VALID_NAMES: set[tuple[str, str, str, str | None]] = set()
_VALID_PERIODS: set[str] = set()


def _check(event: events.UsageRecorded) -> str | None:
    for what, value in (
        ("namespace", event.namespace),
        ("token_name", event.token_name),
        ("endpoint", event.endpoint),
        ("quota", event.quota or "x"),
    ):
        if not _NAME_RE.match(value):
            return f"{what} {value!r} is not a Kubernetes name"
    if event.quota and event.quota_period and not _PERIOD_RE.match(event.quota_period):
        return f"quota_period {event.quota_period!r} is not a period id"
    return None


def _transient(exc: redis.exceptions.ResponseError) -> bool:
    return str(exc).startswith(_TRANSIENT_REPLIES)


@dataclass
class _Unconfirmed:
    """A batch's done-markers, kept in ledger writes until its acks surely reached NATS."""

    markers: dict[str, dict[str, str]]
    """Per ledger key: request id → done-marker."""
    seqs: dict[str, int]
    """Per ledger key: the highest stream sequence of those markers' messages."""
    acked: bool
    """Whether the batch's events are acked (False: nak'ed after being applied; such a
    batch is never confirmed, only passed by the ack floor)."""
    confirmed: asyncio.Future[None] | None = None
    """Resolved when NATS answered a PING written after the batch's acks."""

    def passed(self, floor: int) -> bool:
        """Whether the consumer's ack floor passed every message of the batch."""
        return bool(floor) and bool(self.seqs) and 0 < max(self.seqs.values()) <= floor

    def is_confirmed(self) -> bool:
        done = self.confirmed
        return done is not None and done.done() and not done.cancelled() and not done.exception()


@dataclass
class Lane:
    """One sequential consumer loop of this process; its id names its in-flight markers.

    Batches of one lane are handled one after the other. After writing a batch's acks the
    lane writes a PING on the same connection (`acks_sent`); once NATS answers it, NATS
    has read those acks, and the lane forgets the batch's markers at its next ledger
    write. A process runs several lanes so that one waits on Valkey or NATS while
    another computes.
    """

    id: str
    unconfirmed: deque[_Unconfirmed] = field(default_factory=deque)
    latest: list[_Unconfirmed] = field(default_factory=list)
    """The markers of the batch handled last, whose acks the lane is about to write."""

    def acks_sent(self, confirmed: asyncio.Future[None]) -> None:
        """All acks of the batch handled last were written, then a PING that `confirmed`
        waits for, on one connection. (A batch whose acks could not all be written is
        never confirmed: its markers stay until they expire.)"""
        for batch in self.latest:
            if batch.acked and batch.confirmed is None:
                batch.confirmed = confirmed
        self.latest = []


class Accountant:
    """Settles usage batches and re-evaluates quotas; owns the clients' accountant-side state.

    `handler(lane)` is what `Bus.consume` runs; `evaluate()` re-decides exhaustion when a
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
        self._streams = JetStreamPublisher(wire, timeout=settings.publish_timeout)
        self.recorder = LedgerRecorder(
            bus,
            keep_lanes=settings.ledger.inflight_lanes,
            publisher=self._streams,
            entry_budget=self.entry_budget,
            observe_size=metrics.ledger_entry_bytes.observe,
        )
        self._over_seen = 0
        self._batch_scale = 1.0
        self._scaled_at = 0.0
        self.restorer = Restorer(
            redis, self.recorder, lock_seconds=settings.ledger.restore_lock_seconds, stop=stop
        )
        self.notifier = Notifier(bus, metrics.notices)
        self._publisher = BillingPublisher(self._streams)
        self._lanes: dict[int, Lane] = {}
        self._price_lists: dict[tuple[str, str, str], PriceList] = {}
        self._conflicts_seen = 0
        self.seen_quotas: set[QuotaRef] = set()

    def now(self) -> datetime:
        return self._clock()

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis

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
        self._metrics.restores.inc()
        for account, entry in restored.accounts:
            period = entry.fields.get("sp")
            if account.quota is None or period is None:
                continue
            spec = self.specs.get(account.namespace, account.quota)
            used = {
                k.value: int(entry.fields.get(keys.period_field(period, k), "0"))
                for k in keys.KINDS
            }
            await self.notifier.announce(
                state_event(
                    account,
                    version=entry.version,
                    period=period,
                    exhausted=entry.fields.get("se") == "1",
                    exhausted_kinds=[],
                    used=used,
                    limits=limits_of(spec) if spec else {},
                    reason="restored",
                )
            )

    # ------------------------------------------------------------------ batches
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

    async def handle_batch(
        self, batch: Sequence[Delivery], lane: Lane | None = None
    ) -> Sequence[Disposition]:
        started = time.perf_counter()
        lane = lane or self.lane()
        self._confirm_acks(lane)
        lane.latest = []
        out: list[Disposition] = [Ack()] * len(batch)
        priced: list[PricedEvent] = []
        where: list[int] = []
        phase = self._metrics.phases
        for i, msg in enumerate(batch):
            result = self._price(msg)
            if isinstance(result, PricedEvent):
                priced.append(result)
                where.append(i)
            else:
                out[i] = result
                label = "dead_letter" if isinstance(result, DeadLetter) else "retry"
                self._metrics.events.labels(label).inc()
        phase.labels("decode").observe(time.perf_counter() - started)
        if priced:
            settled = await self._settle_holding(batch, priced, lane)
            for i, disposition in zip(where, settled, strict=True):
                out[i] = disposition
        elapsed = time.perf_counter() - started
        self._metrics.batches.observe(elapsed)
        log.debug("settled a batch of %d in %.1f ms", len(batch), elapsed * 1000)
        return out

    def _price(self, msg: Delivery) -> PricedEvent | Disposition:
        declared = msg.header(_TYPE_HEADER)
        if declared is not None and declared != events.UsageRecorded.TYPE:
            return DeadLetter(f"not a usage event: {events.TYPE_HEADER} is {declared!r}")
        try:
            event = events.decode_as(events.UsageRecorded, msg.data)
        except PermanentError as exc:
            return DeadLetter(exc.message)
        problem = invalid_reason(event)
        if problem is not None:
            return DeadLetter(f"usage event {event.id}: {problem}")
        account = keys.Account.for_usage(event.namespace, event.quota, event.token_name)
        spec = None
        if event.quota:
            spec = self.specs.get(event.namespace, event.quota)
            self.seen_quotas.add((event.namespace, event.quota))
            if spec is None and msg.num_delivered < self._settings.consumer.unknown_quota_retries:
                log.info(
                    "quota %s/%s has no spec yet; retrying %s",
                    event.namespace,
                    event.quota,
                    event.id,
                )
                return Nak(1.0)
        prices = (
            self.specs.prices(event.namespace, event.quota) if spec and event.quota else None
        ) or UNPRICED
        if not event.quota:
            period = ledger.LIFETIME
        elif event.quota_period:
            period = event.quota_period
        else:
            period = ledger.period_id(
                spec.reset_period if spec else ledger.LIFETIME, event.started_at
            )
        return PricedEvent.of(event, account, period, charge(event, prices), msg.stream_sequence)

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
            await self._sleep(delay)
            delay = min(delay * 2, 2.0)
            if time.monotonic() - last_progress > self._settings.consumer.ack_wait / 3:
                last_progress = time.monotonic()
                with contextlib.suppress(WireDown):
                    for msg in batch:
                        self._wire.publish(msg.reply, _IN_PROGRESS)

    async def _sleep(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)

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

    async def _conclude(
        self,
        epoch: int,
        terms: list[AccountTerms],
        priced: list[PricedEvent],
        outcome: SettleOutcome,
        lane: Lane,
    ) -> list[Disposition]:
        markers: dict[keys.Account, dict[str, str]] = defaultdict(dict)
        seqs: dict[keys.Account, int] = defaultdict(int)
        records: list[Bill | None] = []
        prices: dict[keys.Account, dict[str, PriceList]] = defaultdict(dict)
        for term in terms:
            if term.spec is not None and term.account.quota:
                prices[term.account][term.spec.price_version] = PriceList.of(term.spec)
        applied = 0
        for p, previous in zip(priced, outcome.previous, strict=True):
            if p.seq > seqs[p.account]:
                seqs[p.account] = p.seq
            if previous is None:
                applied += 1
                markers[p.account][p.event.id] = p.marker
                records.append(bill_for(p.event, p.period, p.charge))
            else:
                markers[p.account][p.event.id] = previous.raw
                records.append(await self._rebill(p, previous, prices[p.account]))
        self._metrics.events.labels("applied").inc(applied)
        self._metrics.events.labels("duplicate").inc(len(priced) - applied)
        phase = self._metrics.phases
        started = time.perf_counter()
        recorded = await self._record(epoch, outcome.accounts, prices, (lane, markers, seqs))
        phase.labels("record").observe(time.perf_counter() - started)
        to_bill = [
            (i, r)
            for i, (p, r) in enumerate(zip(priced, records, strict=True))
            if r is not None and recorded[p.account]
        ]
        started = time.perf_counter()
        stored = await self._publisher.publish([r for _, r in to_bill])
        phase.labels("bill").observe(time.perf_counter() - started)
        billed = {i: ok for (i, _), ok in zip(to_bill, stored, strict=True)}
        self._metrics.billing_failures.inc(sum(1 for ok in stored if not ok))
        for account_outcome in outcome.accounts:
            if account_outcome.notice and recorded[account_outcome.account]:
                await self._announce(account_outcome, terms)
        out: list[Disposition] = []
        held: dict[str, dict[str, str]] = {}
        for i, p in enumerate(priced):
            if not recorded[p.account]:
                out.append(Nak(0.5))
            elif records[i] is None or billed.get(i, False):
                out.append(_ACK)
            else:
                out.append(Nak(1.0))
                held.setdefault(p.account.ledger_key, {})[p.event.id] = markers[p.account][
                    p.event.id
                ]
        seq_of = {a.ledger_key: seq for a, seq in seqs.items()}
        batch = _Unconfirmed(
            {a.ledger_key: dict(m) for a, m in markers.items() if recorded[a]},
            {a.ledger_key: seq_of[a.ledger_key] for a in markers if recorded[a]},
            acked=True,
        )
        lane.unconfirmed.append(batch)
        lane.latest.append(batch)
        if held:
            held_seqs = {key: seq_of[key] for key in held}
            lane.unconfirmed.append(_Unconfirmed(held, held_seqs, acked=False))
        return out

    async def _rebill(
        self, p: PricedEvent, previous: Marker, known: dict[str, PriceList]
    ) -> Bill | None:
        """The billing record of an event applied earlier, priced as it was then."""
        version = previous.price_version
        cost: Charge
        if version == p.charge.price_version:
            cost = p.charge
        else:
            prices = known.get(version) or await self._price_list(p.account, version)
            if prices is None:
                log.error(
                    "cannot re-bill %s: price list %r is gone; its record was published when "
                    "it was applied",
                    p.event.id,
                    version,
                )
                return None
            known[version] = prices
            cost = charge(p.event, prices)
        if cost.nanos != previous.nanos:
            log.error(
                "re-billing %s gives %s nanos, %s were counted",
                p.event.id,
                cost.nanos,
                previous.nanos,
            )
        return bill_for(p.event, previous.period, cost)

    async def _price_list(self, account: keys.Account, version: str) -> PriceList | None:
        if not version or account.quota is None:
            return UNPRICED if not version else None
        cache_key = (account.namespace, account.quota, version)
        if cache_key in self._price_lists:
            return self._price_lists[cache_key]
        try:
            raw = await self._redis.get(keys.prices_key(account.namespace, account.quota, version))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise RetryableError(f"valkey unavailable: {exc}") from exc
        if raw is None:
            return None
        prices = PriceList.from_json(raw)
        if len(self._price_lists) > 1000:
            self._price_lists.clear()
        self._price_lists[cache_key] = prices
        return prices

    # ------------------------------------------------------------------ ledger
    async def follow_ack_floor(self, stop: asyncio.Event) -> None:
        """Keep `recorder.ack_floor` at the durable consumer's ack floor.

        A floor read over a connection that was lost meanwhile is not used (after a NATS
        restart that lost its data the stream's sequences start again; the old floor
        would drop markers of new, un-acked messages): the floor is unknown (0) until
        read again on the connection the ledger writes go over.
        """
        interval = self._settings.ledger.ack_floor_interval
        self._wire.on_lost(self._forget_floor)
        try:
            while not stop.is_set():
                generation = self._wire.generation
                floor = 0
                try:
                    info = await self._bus.js.consumer_info(
                        subjects.USAGE_STREAM, subjects.ACCOUNTANT_CONSUMER
                    )
                    floor = info.ack_floor.stream_seq if info.ack_floor else 0
                except (nats.errors.Error, OSError, TimeoutError) as exc:
                    log.debug("cannot read the consumer's ack floor: %r", exc)
                if self._wire.generation != generation or not self._wire.connected:
                    floor = 0
                self.recorder.ack_floor = floor or 0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
        finally:
            self._wire.off_lost(self._forget_floor)

    def _forget_floor(self) -> None:
        self.recorder.ack_floor = 0

    def batch_size(self) -> int:
        """How many messages a lane should fetch next.

        A hot quota's ledger entry carries every lane's in-flight markers (~70 bytes an
        event) and must fit in one NATS message. Each time an entry written by this
        process went over the entry budget, the batches of its lanes halve; after a
        second without that they grow back by half, up to `consumer.batch`.
        """
        base = self._settings.consumer.batch
        now = time.monotonic()
        over = self.recorder.over_budget
        if over != self._over_seen:
            self._over_seen = over
            self._batch_scale = max(1 / base, self._batch_scale / 2)
            self._scaled_at = now
        elif self._batch_scale < 1 and now - self._scaled_at > _GROW_AFTER:
            self._batch_scale = min(1.0, self._batch_scale * 1.5)
            self._scaled_at = now
        size = max(1, int(base * self._batch_scale))
        self._metrics.fetch_limit.set(size)
        return size

    def entry_budget(self) -> int:
        """Bytes a ledger entry should stay under (`ledger.entry_budget`, else half the
        server's max_payload)."""
        return self._settings.ledger.entry_budget or self._wire.max_payload // 2

    def _confirm_acks(self, lane: Lane) -> None:
        """Forget batches whose acks NATS has read or that the ack floor passed (a batch
        whose acks were lost, or whose events were nak'ed after being applied, is kept
        until its messages, redelivered, are acked)."""
        floor = self.recorder.ack_floor
        kept = [b for b in lane.unconfirmed if not b.is_confirmed() and not b.passed(floor)]
        lane.unconfirmed = deque(kept[-self._settings.ledger.unconfirmed_batches :])

    async def _record(
        self,
        epoch: int,
        accounts: Sequence[AccountOutcome],
        prices: dict[keys.Account, dict[str, PriceList]],
        inflight_of: tuple[Lane, dict[keys.Account, dict[str, str]], dict[keys.Account, int]]
        | None,
    ) -> dict[keys.Account, bool]:
        """Write the accounts' snapshots; with `inflight_of` = (lane, this batch's markers
        and highest sequences), the lane's in-flight markers become this batch's plus its
        unconfirmed ones."""

        async def one(outcome: AccountOutcome) -> bool:
            account = outcome.account
            owned: dict[str, LaneMarkers] = {}
            if inflight_of is not None:
                lane, markers, seqs = inflight_of
                inflight: dict[str, str] = {}
                seq = seqs.get(account, 0)
                for batch in lane.unconfirmed:
                    kept = batch.markers.get(account.ledger_key)
                    if kept:
                        inflight.update(kept)
                        seq = max(seq, batch.seqs.get(account.ledger_key, 0))
                inflight.update(markers.get(account, {}))
                owned[lane.id] = LaneMarkers(inflight, seq)
            snapshot = Snapshot(
                epoch, outcome.version, outcome.fields, owned, prices.get(account, {})
            )
            if await self.recorder.record(account, snapshot):
                return True
            log.warning("ledger of %s moved to another epoch; redelivering", account.ledger_key)
            await self.restorer.invalidate(epoch)
            return False

        try:
            async with asyncio.TaskGroup() as tg:
                tasks = {a.account: tg.create_task(one(a)) for a in accounts}
        except* RetryableError as group:
            raise RetryableError(str(group.exceptions[0])) from group
        conflicts = self.recorder.conflicts
        self._metrics.ledger_conflicts.inc(conflicts - self._conflicts_seen)
        self._conflicts_seen = conflicts
        return {account: task.result() for account, task in tasks.items()}

    async def _announce(self, outcome: AccountOutcome, terms: list[AccountTerms]) -> None:
        term = next(t for t in terms if t.account == outcome.account)
        await self.notifier.announce(
            state_event(
                outcome.account,
                version=outcome.version,
                period=term.current_period,
                exhausted=outcome.exhausted,
                exhausted_kinds=outcome.exhausted_kinds,
                used=outcome.used,
                limits=limits_of(term.spec) if term.spec else {},
                reason=as_reason(outcome.reason),
            )
        )

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
            recorded = await self._record(epoch, outcome.accounts, prices, None)
            for account_outcome in outcome.accounts:
                if account_outcome.notice and recorded[account_outcome.account]:
                    await self._announce(account_outcome, terms)
