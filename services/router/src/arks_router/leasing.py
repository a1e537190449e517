"""This router's lease on its quota reservations (ledger step 5).

Every router process has an id (`new_router_id()`: host, pid and a random part, so a
restarted process is a new router) and names it in every reservation it makes. Its
lease is its entry in `ledger.ROUTERS_KEY`, scored by expiry on Valkey's clock: the
`run()` task refreshes it every `governance.lease_refresh_seconds` and removes it when
the router stops. The accountant releases the reservations of a router whose lease is
not live, so a router killed with SIGKILL (or OOM-killed, or whose machine died) gives
its reservations back within `ledger.ROUTER_LEASE_SECONDS` plus one sweep instead of
holding them until they expire an hour later.

Nothing here is on a request's path: admission only passes the id along.

Failure modes: a refresh that fails (Valkey down, slow, answering errors) is logged
once per outage and retried at the next tick. An outage longer than the lease lets the
accountant release reservations of requests still in flight; they are billed all the
same when they finish (the accountant applies usage whether or not it finds the
reservation), so the quota is briefly under-reserved, never charged twice. Removing
the lease at shutdown is best effort: if it fails, the lease lapses by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid

from arks_common import ledger
from arks_router import pipelining

log = logging.getLogger(__name__)

_REDIS_ERRORS = (ConnectionError, TimeoutError, OSError, pipelining.ReplyError)

# Valkey's clock, as the admission script's, so router and accountant clocks may differ.
_REFRESH = pipelining.Script(
    r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[2])), ARGV[1])
return 1
"""
)


def new_router_id() -> str:
    """Unique per process; readable enough to tell which router held a reservation."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Lease:
    def __init__(
        self,
        client: pipelining.PipelinedRedis,
        *,
        router_id: str | None = None,
        refresh_seconds: float = 3.0,
    ) -> None:
        self.router_id = router_id or new_router_id()
        self._redis = client
        self._refresh_seconds = refresh_seconds
        self._failing = False

    async def refresh(self) -> bool:
        """Extend the lease by `ledger.ROUTER_LEASE_SECONDS`; False if Valkey failed."""
        try:
            await self._redis.evalsha(
                _REFRESH,
                [ledger.ROUTERS_KEY],
                [self.router_id, ledger.ROUTER_LEASE_SECONDS * 1000],
            )
        except _REDIS_ERRORS as exc:
            if not self._failing:
                log.warning(
                    "cannot refresh router lease %s (%r): if this lasts %d s the accountant "
                    "releases this router's quota reservations",
                    self.router_id,
                    exc,
                    ledger.ROUTER_LEASE_SECONDS,
                )
            self._failing = True
            return False
        if self._failing:
            log.info("router lease %s refreshed again", self.router_id)
        self._failing = False
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh at once, then every `refresh_seconds`, until `stop`."""
        while not stop.is_set():
            await self.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._refresh_seconds)

    async def release(self) -> None:
        """Give the lease up: what this router still holds is released at the next sweep."""
        try:
            await self._redis.execute("ZREM", ledger.ROUTERS_KEY, self.router_id)
        except _REDIS_ERRORS as exc:
            log.warning("cannot remove router lease %s (%r): it lapses", self.router_id, exc)
