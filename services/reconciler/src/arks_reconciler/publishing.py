"""Keeping a KV bucket equal to what the reconciler wants the data plane to see.

A `KvMirror` owns one bucket (routes, tokens or quotas): it loads the bucket's keys once,
then `put`s a value only when its bytes change and `delete`s keys that should not exist,
so the routers' KV watches see one update per real change. `retain()` deletes every key
outside a set: how entries of objects deleted while the reconciler was down disappear.

Failures: NATS errors become `RetryableError` (the reconcile is retried); the in-memory
copy is updated only after the write succeeded, so a failed write is repeated.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import nats.errors
import nats.js.errors

from arks_common.errors import RetryableError
from arks_common.events import Message
from arks_common.messaging import Bus, KvSnapshot

log = logging.getLogger(__name__)

_NATS_ERRORS = (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError)


async def read_bucket(bus: Bus, bucket: str, *, limit: float = 10.0) -> dict[str, bytes]:
    """Every entry of a bucket, as one consistent snapshot."""
    stop = asyncio.Event()
    updates = bus.watch(bucket, stop=stop)
    try:
        async with asyncio.timeout(limit):
            async for update in updates:
                if isinstance(update, KvSnapshot):
                    return dict(update.entries)
    except TimeoutError as exc:
        raise RetryableError(f"reading KV bucket {bucket} timed out") from exc
    finally:
        stop.set()
        await updates.aclose()
    return {}


class KvMirror:
    def __init__(self, bus: Bus, bucket: str) -> None:
        self.bus = bus
        self.bucket = bucket
        self._values: dict[str, bytes] = {}
        self._lock = asyncio.Lock()
        self.writes = 0

    async def load(self) -> None:
        self._values = await read_bucket(self.bus, self.bucket)

    def keys(self) -> set[str]:
        return set(self._values)

    def value(self, key: str) -> bytes | None:
        return self._values.get(key)

    async def put(self, key: str, message: Message) -> bool:
        """Write `message` under `key` unless it is already there; True if written."""
        data = message.to_bytes()
        if self._values.get(key) == data:
            return False
        try:
            kv = await self.bus.kv(self.bucket)
            await kv.put(key, data)
        except _NATS_ERRORS as exc:
            raise RetryableError(f"writing {self.bucket}/{key} failed: {exc}") from exc
        self._values[key] = data
        self.writes += 1
        return True

    async def delete(self, key: str) -> bool:
        """Delete `key` if present; True if deleted."""
        if key not in self._values:
            return False
        try:
            kv = await self.bus.kv(self.bucket)
            await kv.delete(key)
        except _NATS_ERRORS as exc:
            raise RetryableError(f"deleting {self.bucket}/{key} failed: {exc}") from exc
        self._values.pop(key, None)
        self.writes += 1
        return True

    async def retain(self, wanted: Iterable[str]) -> list[str]:
        """Delete every key not in `wanted`; returns the deleted keys."""
        keep = set(wanted)
        async with self._lock:
            stale = sorted(k for k in self._values if k not in keep)
            for key in stale:
                await self.delete(key)
        if stale:
            log.info("removed %d stale entries from %s", len(stale), self.bucket)
        return stale
