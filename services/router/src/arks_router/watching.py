"""Long-running tasks that keep the router's state current from NATS.

- One task per KV bucket (`arks-routes`, `arks-tokens`, `arks-quotas`,
  `arks-quota-state`): every snapshot replaces that bucket's part of the catalog and
  marks the bucket loaded for `/readyz`; changes apply one key at a time. `Bus.watch`
  starts over with a fresh snapshot after a reconnect, so nothing is missed; while
  NATS is away the last state keeps serving.
- One core-NATS subscription to `arks.load.>`: engine load snapshots for least-load
  and the bounded-load guards. Undecodable messages are logged and dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from arks_common import subjects
from arks_common.errors import PermanentError
from arks_common.events import EngineLoadSnapshot, decode_as
from arks_common.messaging import Bus, KvSnapshot
from arks_common.runtime import Health
from arks_router.catalog import Catalog
from arks_router.routing.selecting import Fleet

log = logging.getLogger(__name__)

BUCKETS = (
    subjects.ROUTES_BUCKET,
    subjects.TOKENS_BUCKET,
    subjects.QUOTAS_BUCKET,
    subjects.QUOTA_STATE_BUCKET,
)


def check_name(bucket: str) -> str:
    return f"kv:{bucket}"


async def watch_bucket(
    bus: Bus, bucket: str, catalog: Catalog, health: Health, stop: asyncio.Event
) -> None:
    async for update in bus.watch(bucket, stop=stop):
        catalog.apply(bucket, update)
        if isinstance(update, KvSnapshot):
            log.info("loaded %d entries of %s", len(update.entries), bucket)
            health.set(check_name(bucket), True)


async def follow_loads(
    bus: Bus, fleet: Fleet, stop: asyncio.Event, on_snapshot: Callable[[], None] | None = None
) -> None:
    async def on_message(message: Any) -> None:
        try:
            snapshot = decode_as(EngineLoadSnapshot, message.data)
        except PermanentError as exc:
            log.warning("dropping a load snapshot on %s: %s", message.subject, exc)
            return
        fleet.observe_load(snapshot)
        if on_snapshot is not None:
            on_snapshot()

    subscription = await bus.nc.subscribe(subjects.LOAD_ALL, cb=on_message)
    try:
        await stop.wait()
    finally:
        await subscription.unsubscribe()
