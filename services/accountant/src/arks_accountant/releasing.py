"""Protocol step 5: give back the quota reservations of routers whose lease lapsed.

Every router process keeps a lease in `ledger.ROUTERS_KEY` and names itself in each
reservation it makes (the reservation's `router` field, the quota's `resv-routers`
set). When a router dies without publishing its requests' usage (SIGKILL, OOM, a lost
machine) its lease lapses `ledger.ROUTER_LEASE_SECONDS` after its last refresh, and
the next sweep releases its reservations as step 4 would, without usage; so a quota
held by a dead router's requests is usable again within seconds, not when the
reservations expire an hour later. The usage those requests did deliver is billed
from the dead router's journal when the next router takes its spool slot; that event
finds no reservation and applies only its usage (step 3), once.

Per quota and sweep the script costs one set read and a lease lookup per router that
ever reserved there; the quota's reservations are scanned only when one of those
routers has no live lease. A router absent from the lease registry counts as lapsed
only for reservations older than the lease (it may not have registered yet). Lease
entries that lapsed long ago are dropped from the registry by `forget_lapsed()`.

Failure modes: redis-py's ConnectionError and TimeoutError when Valkey is unreachable
(the sweeper logs and tries again next time); several accountants may run this at
once: each reservation is released by whichever script reaches it first.
"""

from __future__ import annotations

from typing import Final

import redis.asyncio as aioredis

from arks_accountant import keys, scripts
from arks_common import ledger

REGISTRY_RETENTION_SECONDS: Final = 24 * 3600
"""How long a lapsed lease stays in the registry (it only names the router in logs)."""


class LeaseReleaser:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._release = redis.register_script(scripts.RELEASE_LAPSED)
        self._forget = redis.register_script(scripts.FORGET_LAPSED)

    async def release(self, namespace: str, quota: str, limit: int) -> int:
        """Release up to `limit` reservations of lapsed routers in one quota; how many."""
        argv: list[str | int] = [
            ledger.reservation_routers_key(namespace, quota),
            ledger.ROUTERS_KEY,
            ledger.reservation_index_key(namespace, quota),
            ledger.reservation_key(namespace, quota, ""),
            keys.counter_prefix(namespace, quota),
            ledger.ROUTER_LEASE_SECONDS,
            limit,
            *keys.RESERVED_SUFFIXES,
        ]
        return int(await self._release(args=argv))

    async def forget_lapsed(self) -> int:
        """Drop registry entries of leases that lapsed more than a retention ago."""
        argv: list[str | int] = [ledger.ROUTERS_KEY, REGISTRY_RETENTION_SECONDS * 1000]
        return int(await self._forget(args=argv))
