"""Restore, never reset: keep Valkey holding what the durable ledger holds.

Valkey carries a sentinel, the epoch key, that the SETTLE script checks on every call.
When it is missing (Valkey came back empty, or a restore was interrupted), or older
than the ledger's epoch (Valkey came back from an old backup), one accountant takes the
restore lock and:

1. bumps the ledger's epoch (compare-and-set `_meta.epoch`), so every write still in
   flight from before fails and its batch is redelivered instead of acked;
2. rewrites every ledger entry with the new epoch (compare-and-set, re-reading entries
   that an older-epoch writer changed meanwhile), and loads it into Valkey: the account
   hash, the quota's used counters per period, the done-markers of the in-flight events
   and the price lists they name; the per-token / endpoint / quota / namespace usage
   hashes are recomputed from all accounts;
3. sets the epoch key last, which lets settlement resume.

The others wait for the epoch key. When the ledger is the one that lost its data (its
epoch is older than Valkey's), it is re-seeded from Valkey instead. Failure modes: NATS
or Valkey unavailable → RetryableError (the caller tries again); the restore lock is a
lease, so a restorer that dies is replaced after `restore_lock_seconds`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import redis.asyncio as aioredis
import redis.exceptions

from arks_accountant import keys
from arks_accountant.recording import LedgerEntry, LedgerRecorder, StoredEntry
from arks_accountant.settling import period_ttl
from arks_common import ledger
from arks_common.errors import RetryableError

log = logging.getLogger(__name__)

_PIPELINE_CHUNK = 2000
_CLEAR_STALE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Restored:
    """What one restore loaded into Valkey."""

    epoch: int
    accounts: list[tuple[keys.Account, LedgerEntry]] = field(default_factory=list)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _redis_failure(exc: BaseException) -> RetryableError:
    return RetryableError(f"valkey unavailable: {exc!r}", delay=0.5)


class Restorer:
    """Knows the epoch Valkey holds and restores Valkey from the ledger when needed."""

    def __init__(
        self,
        redis: aioredis.Redis,
        recorder: LedgerRecorder,
        *,
        lock_seconds: float,
        stop: asyncio.Event,
    ) -> None:
        self._redis = redis
        self._recorder = recorder
        self._lock_seconds = lock_seconds
        self._stop = stop
        self._mutex = asyncio.Lock()
        self._clear_stale = redis.register_script(_CLEAR_STALE)
        self.epoch: int | None = None
        self.restores = 0

    async def valkey_epoch(self) -> int | None:
        try:
            raw = await self._redis.get(keys.EPOCH_KEY)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise _redis_failure(exc) from exc
        return int(raw) if raw is not None else None

    async def ensure(self) -> Restored | None:
        """Make sure Valkey holds the ledger; returns what was restored, if this call did."""
        async with self._mutex:
            while True:
                current = await self.valkey_epoch()
                if current is not None:
                    meta, _ = await self._recorder.meta_epoch()
                    if current >= meta:
                        if current > meta:
                            await self._reseed(current)
                        self.epoch = current
                        return None
                    log.warning("valkey holds epoch %s, older than the ledger's %s", current, meta)
                    await self._clear_stale(keys=[keys.EPOCH_KEY], args=[str(current)])
                    continue
                restored = await self._restore_under_lock()
                if restored is not None:
                    return restored
                if self._stop.is_set():
                    raise RetryableError("stopping while waiting for a restore")
                await asyncio.sleep(0.1)

    async def invalidate(self, epoch: int) -> None:
        """A ledger write found another epoch than `epoch`: if Valkey still holds `epoch`
        while the ledger moved on, Valkey is stale; clear its epoch so it is restored."""
        meta, _ = await self._recorder.meta_epoch()
        current = await self.valkey_epoch()
        if current == epoch and meta > epoch:
            await self._clear_stale(keys=[keys.EPOCH_KEY], args=[str(epoch)])
        self.epoch = None

    # ------------------------------------------------------------------ restore
    async def _restore_under_lock(self) -> Restored | None:
        lock = self._redis.lock(
            keys.RESTORE_LOCK_KEY, timeout=self._lock_seconds, blocking=False, thread_local=False
        )
        try:
            if not await lock.acquire():
                return None
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise _redis_failure(exc) from exc
        try:
            if await self.valkey_epoch() is not None:
                return None  # someone finished a restore between our check and the lock
            return await self._restore()
        finally:
            try:
                await lock.release()
            except (redis.exceptions.LockError, redis.exceptions.ConnectionError) as exc:
                log.warning("restore lock release failed: %s", exc)

    async def _restore(self) -> Restored:
        while True:
            old, revision = await self._recorder.meta_epoch()
            epoch = old + 1
            if await self._recorder.set_meta_epoch(epoch, revision):
                break
        first = old == 0
        if first:
            log.info("first start: the ledger is empty, valkey starts at epoch 1")
        else:
            log.warning("valkey holds no accountant epoch: restoring it from the ledger")
        accounts: list[tuple[keys.Account, LedgerEntry]] = []
        for stored in await self._recorder.read_all():
            entry = await self._adopt(stored, epoch)
            if entry is not None:
                accounts.append((keys.Account.from_ledger_key(stored.key), entry))
        await self._load(accounts)
        try:
            await self._redis.set(keys.EPOCH_KEY, str(epoch))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise _redis_failure(exc) from exc
        self._recorder.forget()
        self.epoch = epoch
        self.restores += 1
        if accounts or not first:
            log.warning("restored %d accounts into valkey (epoch %s)", len(accounts), epoch)
        return Restored(epoch, accounts)

    async def _adopt(self, stored: StoredEntry, epoch: int) -> LedgerEntry | None:
        """Rewrite one entry with the new epoch, re-reading it while older writers race us."""
        while True:
            if stored.entry.epoch > epoch:
                raise RetryableError(f"ledger entry {stored.key} is from a newer restore")
            entry = stored.entry.model_copy(update={"epoch": epoch})
            if await self._recorder.rewrite(stored, entry) is not None:
                return entry
            found = await self._recorder.read(stored.key)
            if found is None:
                return None
            stored = StoredEntry(stored.key, found[0], found[1])

    async def _load(self, accounts: list[tuple[keys.Account, LedgerEntry]]) -> None:
        usage: dict[str, Counter[str]] = defaultdict(Counter)
        members: dict[str, set[str]] = defaultdict(set)
        commands: list[tuple[str, tuple[object, ...], dict[str, object]]] = []

        def cmd(name: str, *args: object, **kwargs: object) -> None:
            commands.append((name, args, kwargs))

        for account, entry in accounts:
            ns, quota = account.namespace, account.quota
            cmd("delete", account.hash_key)
            if entry.fields:
                cmd("hset", account.hash_key, mapping=entry.fields)
            members[keys.NAMESPACES_KEY].add(ns)
            if quota:
                members[keys.quotas_index_key(ns)].add(quota)
            for name, value in entry.fields.items():
                kind, _, rest = name.partition(":")
                if kind == "p" and quota:
                    period, _, counter = rest.rpartition(":")
                    ttl = period_ttl(period)
                    cmd("set", ledger.used_key(ns, quota, period, counter), value, ex=ttl or None)
                elif kind == "a":
                    usage[keys.namespace_usage_key(ns)][rest] += int(value)
                    if quota:
                        usage[keys.quota_usage_key(ns, quota)][rest] += int(value)
                elif kind in ("t", "e"):
                    owner, _, counter = rest.partition(":")
                    if kind == "t":
                        usage[keys.token_usage_key(ns, owner)][counter] += int(value)
                        members[keys.tokens_index_key(ns)].add(owner)
                    else:
                        usage[keys.endpoint_usage_key(ns, owner)][counter] += int(value)
                        members[keys.endpoints_index_key(ns)].add(owner)
            for flight in entry.inflight.values():
                for request_id, marker in flight.markers.items():
                    cmd("set", account.done_key(request_id), marker, ex=ledger.APPLIED_TTL_SECONDS)
            if quota:
                for version, prices in entry.prices.items():
                    cmd(
                        "set",
                        keys.prices_key(ns, quota, version),
                        prices.to_json(),
                        ex=ledger.APPLIED_TTL_SECONDS,
                    )
        for key, counts in usage.items():
            cmd("delete", key)
            if counts:
                cmd("hset", key, mapping=dict(counts))
        for key, names in members.items():
            cmd("sadd", key, *sorted(names))
        try:
            for start in range(0, len(commands), _PIPELINE_CHUNK):
                pipe = self._redis.pipeline(transaction=False)
                for name, args, kwargs in commands[start : start + _PIPELINE_CHUNK]:
                    getattr(pipe, name)(*args, **kwargs)
                await pipe.execute()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise _redis_failure(exc) from exc

    # ------------------------------------------------------------------ reseed
    async def _reseed(self, epoch: int) -> None:
        """The ledger is behind Valkey (NATS lost its data): copy every account from Valkey."""
        log.warning(
            "the ledger's epoch is older than valkey's %s: re-seeding it from valkey", epoch
        )
        try:
            async for raw_key in self._redis.scan_iter(match=keys.ACCOUNT_HASH_PATTERN, count=500):
                key = _text(raw_key)
                account = keys.Account.from_hash_key(key)
                if account is None:
                    continue
                found = await self._recorder.read(account.ledger_key)
                if found is not None and found[1].epoch == epoch:
                    continue  # written since by a settlement: newer than our copy
                raw = await self._redis.hgetall(key)
                fields = {_text(k): _text(v) for k, v in raw.items()}
                entry = LedgerEntry(epoch=epoch, version=int(fields.get("ver", "0")), fields=fields)
                await self._recorder.put_fresh(account.ledger_key, entry)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise _redis_failure(exc) from exc
        while True:
            meta, revision = await self._recorder.meta_epoch()
            if meta >= epoch or await self._recorder.set_meta_epoch(epoch, revision):
                return
