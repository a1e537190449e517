"""Protocol step 4: release quota reservations whose request never reported back.

A router that dies mid-request leaves its reservation behind; once the reservation's
`expires` has passed (request timeout + `ledger.RESERVATION_GRACE_SECONDS`) the SWEEP
script releases it exactly as settlement would, without usage. Several accountants may
sweep at once: each reservation is released by whichever script reaches it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.exceptions

from arks_accountant.accounting import Accountant
from arks_accountant.metrics import Metrics
from arks_accountant.settings import SweepSettings

log = logging.getLogger(__name__)


async def sweep_once(accountant: Accountant, settings: SweepSettings) -> int:
    quotas = {(s.namespace, s.name) for s in accountant.specs.all()} | accountant.seen_quotas
    now = accountant.now().timestamp()
    released = 0
    for namespace, quota in sorted(quotas):
        released += await accountant.settler.sweep(namespace, quota, now, settings.max_per_quota)
    return released


async def sweep_forever(
    accountant: Accountant, settings: SweepSettings, metrics: Metrics, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.interval)
        if stop.is_set():
            return
        try:
            released = await sweep_once(accountant, settings)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.warning("sweep skipped: %s", exc)
            continue
        if released:
            log.info("released %d expired reservations", released)
            metrics.swept.inc(released)
