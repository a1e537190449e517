"""Lane bookkeeping: which done-markers a consumer lane must keep in its ledger writes.

Every applied (or found-applied) event's done-marker goes into the ledger entry of its
account before the event is acked. Once NATS has surely read the ack, the marker is not
needed any more (a redelivery is impossible), so a lane keeps the markers of each batch
(`Unconfirmed`) until one of:

- NATS answered a PING the lane wrote after all of the batch's acks, on the same
  connection (`Lane.acks_sent`, then `is_confirmed()`);
- the durable consumer's ack floor passed every message of the batch (`passed()`): that
  covers batches whose acks could not all be written and events nak'ed after being
  applied, which are never confirmed by a PING.

At most `ledger.unconfirmed_batches` batches are kept per lane (the oldest dropped).
No I/O and no failure modes here: the futures and sequences come from the caller.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from arks_accountant import keys
from arks_accountant.recording import LaneMarkers
from arks_accountant.settling import Marker, PricedEvent


@dataclass
class Unconfirmed:
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
class BatchMarkers:
    """The done-markers of one settled batch per account, and the highest stream
    sequence of each account's messages."""

    markers: dict[keys.Account, dict[str, str]]
    seqs: dict[keys.Account, int]
    applied: int
    """Events applied by this settlement (the others had been applied before)."""

    @classmethod
    def of(cls, priced: Sequence[PricedEvent], previous: Sequence[Marker | None]) -> BatchMarkers:
        """A fresh event's marker is the one SETTLE set; a duplicate's the one it found."""
        markers: dict[keys.Account, dict[str, str]] = defaultdict(dict)
        seqs: dict[keys.Account, int] = defaultdict(int)
        applied = 0
        for p, before in zip(priced, previous, strict=True):
            if p.seq > seqs[p.account]:
                seqs[p.account] = p.seq
            if before is None:
                applied += 1
                markers[p.account][p.event.id] = p.marker
            else:
                markers[p.account][p.event.id] = before.raw
        return cls(markers, seqs, applied)


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
    unconfirmed: deque[Unconfirmed] = field(default_factory=deque)
    latest: list[Unconfirmed] = field(default_factory=list)
    """The markers of the batch handled last, whose acks the lane is about to write."""

    def acks_sent(self, confirmed: asyncio.Future[None]) -> None:
        """All acks of the batch handled last were written, then a PING that `confirmed`
        waits for, on one connection. (A batch whose acks could not all be written is
        never confirmed: its markers stay until they expire.)"""
        for batch in self.latest:
            if batch.acked and batch.confirmed is None:
                batch.confirmed = confirmed
        self.latest = []

    def start_batch(self, floor: int, keep: int) -> None:
        """Before a new batch: forget batches whose acks NATS has read or that the ack
        `floor` passed (a batch whose acks were lost, or whose events were nak'ed after
        being applied, is kept until its messages, redelivered, are acked); keep at most
        `keep` of the rest."""
        kept = [b for b in self.unconfirmed if not b.is_confirmed() and not b.passed(floor)]
        self.unconfirmed = deque(kept[-keep:])
        self.latest = []

    def inflight(self, account: keys.Account, batch: BatchMarkers) -> LaneMarkers:
        """What this lane's in-flight markers in `account`'s entry become with `batch`:
        its unconfirmed batches' markers plus the batch's own."""
        key = account.ledger_key
        inflight: dict[str, str] = {}
        seq = batch.seqs.get(account, 0)
        for earlier in self.unconfirmed:
            kept = earlier.markers.get(key)
            if kept:
                inflight.update(kept)
                seq = max(seq, earlier.seqs.get(key, 0))
        inflight.update(batch.markers.get(account, {}))
        return LaneMarkers(inflight, seq)

    def settled(
        self,
        batch: BatchMarkers,
        recorded: Mapping[keys.Account, bool],
        held: dict[str, dict[str, str]],
    ) -> None:
        """Keep the markers of a batch whose entries were written (`recorded`) until its
        acks are confirmed; `held` (per ledger key) are those of events nak'ed after
        being applied, kept until the ack floor passes them."""
        seq_of = {a.ledger_key: seq for a, seq in batch.seqs.items()}
        done = Unconfirmed(
            {a.ledger_key: dict(m) for a, m in batch.markers.items() if recorded[a]},
            {a.ledger_key: seq_of[a.ledger_key] for a in batch.markers if recorded[a]},
            acked=True,
        )
        self.unconfirmed.append(done)
        self.latest.append(done)
        if held:
            held_seqs = {key: seq_of[key] for key in held}
            self.unconfirmed.append(Unconfirmed(held, held_seqs, acked=False))
