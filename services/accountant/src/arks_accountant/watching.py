"""The watchdog: readiness (NATS, Valkey, restored) and restore-on-data-loss.

NATS counts as connected when both connections are (nats-py's and the hot-path wire).
Every `ledger.watchdog_interval` it pings Valkey and reads the epoch sentinel. When
Valkey came back empty (no epoch) or holds another epoch than this process knows, it
runs the restore at once, without waiting for traffic, so routers see restored counters
within about one interval. Every twentieth round it also compares with the ledger's
epoch, which notices a ledger that lost its data (then re-seeded from Valkey).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis
import redis.exceptions

from arks_accountant.accounting import Accountant
from arks_accountant.wire import Wire
from arks_common.errors import RetryableError
from arks_common.messaging import Bus
from arks_common.runtime import Health

log = logging.getLogger(__name__)

NATS_CHECK = "nats"
VALKEY_CHECK = "valkey"
LEDGER_CHECK = "ledger"
CONSUMER_CHECK = "consumer"
CHECKS = (NATS_CHECK, VALKEY_CHECK, LEDGER_CHECK, CONSUMER_CHECK)
_FULL_CHECK_EVERY = 20


async def watch_health(
    accountant: Accountant,
    bus: Bus,
    wire: Wire,
    client: aioredis.Redis,
    health: Health,
    stop: asyncio.Event,
    interval: float,
) -> None:
    rounds = 0
    while not stop.is_set():
        connected = bus.connected and wire.connected
        health.set(NATS_CHECK, connected)
        valkey_ok = await _ping(client, interval)
        health.set(VALKEY_CHECK, valkey_ok)
        if valkey_ok and connected:
            try:
                current = await accountant.restorer.valkey_epoch()
                if (
                    current is None
                    or current != accountant.restorer.epoch
                    or rounds % _FULL_CHECK_EVERY == 0
                ):
                    accountant.restorer.epoch = None
                    await accountant.epoch()
                health.set(LEDGER_CHECK, accountant.restorer.epoch is not None)
            except RetryableError as exc:
                log.warning("restore check failed: %s", exc.message)
                health.set(LEDGER_CHECK, False)
        rounds += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def _ping(client: aioredis.Redis, limit: float) -> bool:
    try:
        async with asyncio.timeout(max(limit, 1.0)):
            return bool(await client.ping())
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, TimeoutError):
        return False
