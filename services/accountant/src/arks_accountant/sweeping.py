"""Protocol steps 4 and 5: release quota reservations whose request never reported back.

A router that dies mid-request leaves its reservations behind. Each sweep (every
`sweep.interval` seconds) releases, per quota, those of routers whose lease lapsed
(step 5, `arks_accountant.releasing`: seconds after the router died) and, as a
backstop, those whose `expires` has passed (step 4: request timeout +
`ledger.RESERVATION_GRACE_SECONDS`, for reservations no lease covers). Both release
exactly as settlement would, without usage. Several accountants may sweep at once:
each reservation is released by whichever script reaches it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.exceptions

from arks_accountant.accounting import Accountant
from arks_accountant.metrics import Metrics
from arks_accountant.releasing import LeaseReleaser
from arks_accountant.settings import SweepSettings

log = logging.getLogger(__name__)


async def sweep_once(
    accountant: Accountant, settings: SweepSettings, leases: LeaseReleaser
) -> tuple[int, int]:
    """(reservations of lapsed routers released, expired reservations released)."""
    quotas = {(s.namespace, s.name) for s in accountant.specs.all()} | accountant.seen_quotas
    now = accountant.now().timestamp()
    lapsed = expired = 0
    for namespace, quota in sorted(quotas):
        lapsed += await leases.release(namespace, quota, settings.max_per_quota)
        expired += await accountant.settler.sweep(namespace, quota, now, settings.max_per_quota)
    await leases.forget_lapsed()
    return lapsed, expired


async def sweep_forever(
    accountant: Accountant, settings: SweepSettings, metrics: Metrics, stop: asyncio.Event
) -> None:
    leases = LeaseReleaser(accountant.redis)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.interval)
        if stop.is_set():
            return
        try:
            lapsed, expired = await sweep_once(accountant, settings, leases)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.warning("sweep skipped: %s", exc)
            continue
        if lapsed:
            log.info("released %d reservations of routers whose lease lapsed", lapsed)
            metrics.lease_released.inc(lapsed)
        if expired:
            log.info("released %d expired reservations", expired)
            metrics.swept.inc(expired)
