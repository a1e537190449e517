"""The durable copy of every account in NATS KV `arks-ledger`, written before any ack.

One entry per account (see `arks_accountant.keys`): the epoch it belongs to, the
account hash exactly as the latest SETTLE call left it (`version` orders them), and per
consumer lane (`<instance>/<n>`) the done-markers of the events it applied or found
applied but whose acks are not yet known to have reached NATS (`inflight`), with the
price lists those markers name. docs/accountant.md gives the argument why that is
enough to stay exactly once when Valkey loses everything.

Writes are compare-and-set on the entry's revision. A write whose epoch differs from
the entry's fails (`record()` returns False): a restore happened after the caller
applied its batch, whose messages must then be redelivered rather than acked. A write
carrying an older snapshot than the entry only adds its in-flight markers: the newer
snapshot already contains its effect. Creating an entry is followed by a check of the
epoch meta key, so an entry created while a restore lists the bucket is never missed.

Failure modes: NATS errors surface as RetryableError (the caller keeps its batch and
retries); an entry that does not decode is a PermanentError (someone wrote the bucket).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import nats.errors
import nats.js.errors
from nats.js.client import KV_PRE_TEMPLATE
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from arks_accountant import keys
from arks_accountant.pricing import PriceList
from arks_accountant.publishing import JetStreamPublisher
from arks_common import subjects
from arks_common.errors import PermanentError, RetryableError
from arks_common.messaging import Bus

_WRONG_LAST_SEQUENCE = (10071, 10164)
_EXPECTED_LAST = b"NATS/1.0\r\nNats-Expected-Last-Subject-Sequence: %d\r\n\r\n"


class _KvWrite(NamedTuple):
    subject: bytes
    headers: bytes
    body: bytes


_CAS_ATTEMPTS = 100


class Inflight(BaseModel):
    """Done-markers one lane wrote the ledger with, whose acks may not have reached NATS."""

    model_config = ConfigDict(extra="ignore")

    at: float = Field(description="Unix time of the write.")
    markers: dict[str, str] = Field(default_factory=dict, description="request id → marker")
    seq: int = Field(
        0,
        description="The highest ARKS_USAGE stream sequence of the markers' messages; once "
        "the consumer's ack floor reaches it none of them can be delivered again (0: unknown, "
        "written before sequences were kept).",
    )

    @cached_property
    def versions(self) -> frozenset[str]:
        """The price versions the markers name (computed once per entry read or write)."""
        return frozenset(map(marker_version, self.markers.values()))


def marker_version(marker: str) -> str:
    """`Marker.parse(marker).price_version`, without parsing the rest (many per write)."""
    first = marker.find("|")
    return marker[first + 1 : marker.rfind("|")] if first >= 0 else ""


class LedgerEntry(BaseModel):
    """One account's durable state."""

    model_config = ConfigDict(extra="ignore")

    epoch: int
    version: int
    fields: dict[str, str]
    inflight: dict[str, Inflight] = Field(default_factory=dict)
    prices: dict[str, PriceList] = Field(
        default_factory=dict, description="Price lists named by in-flight markers, by version."
    )

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LedgerEntry:
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise PermanentError(f"undecodable ledger entry: {exc}") from exc


class LaneMarkers(NamedTuple):
    """One lane's in-flight markers for an entry, and the highest stream sequence among
    their messages."""

    markers: Mapping[str, str]
    seq: int


@dataclass(frozen=True)
class Snapshot:
    """What one SETTLE call left in an account, and the in-flight markers to keep with it."""

    epoch: int
    version: int
    fields: Mapping[str, str]
    markers: Mapping[str, LaneMarkers]
    """Per lane (`<instance>/<n>`): its in-flight markers, replacing what the entry had."""
    prices: Mapping[str, PriceList]

    def combine(self, other: Snapshot) -> Snapshot:
        """Both snapshots in one write (same epoch): the newer fields, all the markers."""
        newer = other if other.version > self.version else self
        return Snapshot(
            self.epoch,
            newer.version,
            newer.fields,
            {**self.markers, **other.markers},
            {**self.prices, **other.prices},
        )


@dataclass
class _Slot:
    """Writes to one entry wait here while another is in flight, then go as one."""

    busy: bool = False
    queue: list[tuple[Snapshot, asyncio.Future[bool]]] = field(default_factory=list)


@dataclass(frozen=True)
class StoredEntry:
    key: str
    revision: int
    entry: LedgerEntry


def _nats_failure(exc: BaseException) -> RetryableError:
    return RetryableError(f"ledger unavailable: {exc!r}", delay=0.5)


class LedgerRecorder:
    """Compare-and-set writes of account snapshots, with a cache of the last revisions."""

    def __init__(
        self,
        bus: Bus,
        *,
        keep_lanes: int = 64,
        publisher: JetStreamPublisher | None = None,
        entry_budget: Callable[[], int] | None = None,
        observe_size: Callable[[int], None] | None = None,
    ) -> None:
        self._bus = bus
        self._keep = keep_lanes
        self._publisher = publisher
        self._entry_budget = entry_budget
        self._observe_size = observe_size
        self._subject_prefix = KV_PRE_TEMPLATE.format(bucket=subjects.LEDGER_BUCKET).encode()
        self._kv: KeyValue | None = None
        self._cache: dict[str, tuple[int, LedgerEntry]] = {}
        self._slots: dict[str, _Slot] = {}
        self.conflicts = 0
        self.ack_floor = 0
        """The durable consumer's ack floor as last read (0: unknown). Every message at or
        below it is acked, so in-flight markers whose `seq` it reached are dropped from
        the entries written. A stale value is only lower, which drops less."""
        self.over_budget = 0
        """Entries written (or attempted) larger than `entry_budget()`."""

    async def kv(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self._bus.kv(subjects.LEDGER_BUCKET)
            except (nats.errors.Error, OSError, TimeoutError) as exc:
                raise _nats_failure(exc) from exc
        return self._kv

    def forget(self) -> None:
        """Drop cached revisions (after a restore rewrote every entry)."""
        self._cache.clear()

    # ------------------------------------------------------------------ entries
    async def read(self, key: str) -> tuple[int, LedgerEntry] | None:
        kv = await self.kv()
        try:
            got = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise _nats_failure(exc) from exc
        assert got.revision is not None
        return got.revision, LedgerEntry.from_bytes(got.value or b"")

    async def read_all(self) -> list[StoredEntry]:
        """Every account entry (not the meta keys), with its revision."""
        kv = await self.kv()
        out: list[StoredEntry] = []
        try:
            watcher = await kv.watchall(ignore_deletes=True)
            try:
                async for item in watcher:
                    if item is None:
                        break
                    if item.key.startswith("_meta.") or not item.value:
                        continue
                    assert item.revision is not None
                    out.append(
                        StoredEntry(item.key, item.revision, LedgerEntry.from_bytes(item.value))
                    )
            finally:
                await watcher.stop()  # type: ignore[no-untyped-call]
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise _nats_failure(exc) from exc
        return out

    async def record(self, account: keys.Account, snapshot: Snapshot) -> bool:
        """Merge a snapshot into the account's entry; False if the entry has another epoch.

        Concurrent calls for one entry (the lanes of this process) are combined: while a
        write is in flight the others queue, and the queue goes out as one write.
        """
        key = account.ledger_key
        slot = self._slots.setdefault(key, _Slot())
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        slot.queue.append((snapshot, done))
        if not slot.busy:
            slot.busy = True
            try:
                while slot.queue:
                    await self._write_queued(key, slot)
            finally:
                slot.busy = False
                for _, waiting in slot.queue:  # only left when this writer was cancelled
                    if not waiting.done():
                        waiting.set_exception(RetryableError("ledger write abandoned"))
                slot.queue = []
        return await done

    async def _write_queued(self, key: str, slot: _Slot) -> None:
        queued, slot.queue = slot.queue, []
        by_epoch: dict[int, list[tuple[Snapshot, asyncio.Future[bool]]]] = {}
        for item in queued:
            by_epoch.setdefault(item[0].epoch, []).append(item)
        for group in by_epoch.values():
            combined = group[0][0]
            for snapshot, _ in group[1:]:
                combined = combined.combine(snapshot)
            try:
                ok = await self._write(key, combined)
            except BaseException as exc:
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for _, done in group:
                if not done.done():
                    done.set_result(ok)

    async def _write(self, key: str, snapshot: Snapshot) -> bool:
        kv = await self.kv()
        cached = self._cache.get(key)
        for _ in range(_CAS_ATTEMPTS):
            current: LedgerEntry | None
            if cached is None:
                found = await self.read(key)
                revision, current = found if found else (0, None)
            else:
                revision, current = cached
            merged = self._merge(current, snapshot)
            if merged is None:
                self._cache.pop(key, None)
                return False
            data = merged.to_bytes()
            self._measure(len(data))
            try:
                if revision:
                    new_revision = await self._update(kv, key, data, revision)
                else:
                    new_revision = await kv.create(key, data)
            except nats.js.errors.KeyWrongLastSequenceError:
                self.conflicts += 1
                cached = None
                continue
            except (nats.errors.Error, OSError, TimeoutError) as exc:
                self._cache.pop(key, None)
                raise _nats_failure(exc) from exc
            self._cache[key] = (new_revision, merged)
            return bool(revision) or await self._created_in_epoch(key, new_revision, snapshot)
        raise RetryableError(f"ledger entry {key} keeps changing under us", delay=0.2)

    def _measure(self, size: int) -> None:
        if self._observe_size is not None:
            self._observe_size(size)
        if self._entry_budget is not None and size > self._entry_budget():
            self.over_budget += 1

    async def _update(self, kv: KeyValue, key: str, value: bytes, last: int) -> int:
        """`kv.update(key, value, last=last)`, over the hot-path wire when there is one
        (the same JetStream publish with the expected-revision header, pipelined with the
        other accounts' writes of the batch)."""
        if self._publisher is None:
            return await kv.update(key, value, last=last)
        message = _KvWrite(self._subject_prefix + key.encode(), _EXPECTED_LAST % last, value)
        [ack] = await self._publisher.publish([message])
        if ack.seq:
            return ack.seq
        if ack.error in _WRONG_LAST_SEQUENCE:
            raise nats.js.errors.KeyWrongLastSequenceError(description=ack.description)
        raise RetryableError(
            f"ledger write of {key} failed: {ack.error} {ack.description}", delay=0.5
        )

    def _merge(self, current: LedgerEntry | None, snapshot: Snapshot) -> LedgerEntry | None:
        if current is not None and current.epoch != snapshot.epoch:
            return None
        newer = current is None or snapshot.version >= current.version
        inflight = dict(current.inflight) if current else {}
        for owner, (markers, seq) in snapshot.markers.items():
            # built from our own str -> str mapping: nothing to validate
            inflight[owner] = Inflight.model_construct(
                at=time.time(), markers=dict(markers), seq=seq
            )
        floor = self.ack_floor
        if floor:
            # every message of such a set is acked: it can never be redelivered, so its
            # marker is not needed to restore Valkey (this is what removes the sets of
            # lanes that stopped writing the entry: processes gone, lanes moved on)
            inflight = {o: f for o, f in inflight.items() if not 0 < f.seq <= floor}
        if len(inflight) > self._keep:
            ordered = sorted(inflight.items(), key=lambda kv: kv[1].at, reverse=True)
            inflight = dict(ordered[: self._keep])
        named = {v for flight in inflight.values() for v in flight.versions}
        prices = {**(current.prices if current else {}), **snapshot.prices}
        prices = {v: p for v, p in prices.items() if v in named and v}
        if newer:
            return LedgerEntry(
                epoch=snapshot.epoch,
                version=snapshot.version,
                fields=dict(snapshot.fields),
                inflight=inflight,
                prices=prices,
            )
        assert current is not None
        return current.model_copy(update={"inflight": inflight, "prices": prices})

    async def _created_in_epoch(self, key: str, revision: int, snapshot: Snapshot) -> bool:
        """After creating an entry: if a restore began meanwhile, it may have listed the
        bucket before our entry existed; then withdraw the entry (unless the restore
        already rewrote it) and report failure, so the batch is redelivered."""
        meta_epoch, _ = await self.meta_epoch()
        if meta_epoch <= snapshot.epoch:
            return True
        kv = await self.kv()
        try:
            await kv.delete(key, last=revision)
        except nats.js.errors.APIError as exc:
            if exc.err_code not in _WRONG_LAST_SEQUENCE:
                raise _nats_failure(exc) from exc
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise _nats_failure(exc) from exc
        self._cache.pop(key, None)
        return False

    # ------------------------------------------------------------------ epoch
    async def meta_epoch(self) -> tuple[int, int]:
        """(epoch, revision) of the restore epoch; (0, 0) before the first restore."""
        kv = await self.kv()
        try:
            got = await kv.get(keys.LEDGER_META_EPOCH)
        except nats.js.errors.KeyNotFoundError:
            return 0, 0
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise _nats_failure(exc) from exc
        assert got.revision is not None
        try:
            return int(got.value or b"0"), got.revision
        except ValueError as exc:
            raise PermanentError(f"bad ledger epoch {got.value!r}") from exc

    async def set_meta_epoch(self, epoch: int, revision: int) -> bool:
        """Compare-and-set the epoch; False if it changed since `revision` was read."""
        kv = await self.kv()
        try:
            if revision:
                await kv.update(keys.LEDGER_META_EPOCH, str(epoch).encode(), last=revision)
            else:
                await kv.create(keys.LEDGER_META_EPOCH, str(epoch).encode())
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise _nats_failure(exc) from exc
        return True

    async def rewrite(self, stored: StoredEntry, entry: LedgerEntry) -> int | None:
        """Compare-and-set one entry as a whole (restore); None if it changed meanwhile."""
        kv = await self.kv()
        try:
            revision = await kv.update(stored.key, entry.to_bytes(), last=stored.revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            return None
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise _nats_failure(exc) from exc
        self._cache[stored.key] = (revision, entry)
        return revision

    async def put_fresh(self, key: str, entry: LedgerEntry) -> None:
        """Write an entry unconditionally (re-seeding a ledger that lost its data)."""
        kv = await self.kv()
        try:
            revision = await kv.put(key, entry.to_bytes())
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise _nats_failure(exc) from exc
        self._cache[key] = (revision, entry)
