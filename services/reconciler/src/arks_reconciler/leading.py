"""Leadership: only one reconciler acts on a platform's objects at a time.

A platform names its `Leadership`. `run(stop)` campaigns for as long as the service runs
and keeps two events: `leading` (set while this process leads) and `lost` (set, for good,
when it led and stopped leading — another reconciler may act now). The reconciler starts
reconciling, publishing to KV and scraping only once `leading` is set, and stops the
service with `LeadershipLost` (retryable: exit 75, the supervisor starts it again as a
candidate) when `lost` is set.

`SoleLeader` is the local platform's: a local stack runs one reconciler, which leads from
the start and never loses. The Kubernetes platform's is an elector on a
coordination.k8s.io Lease.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from arks_common.errors import RetryableError


class LeadershipLost(RetryableError):
    """This reconciler stopped leading: another may act now; start again as a candidate."""


class Leadership(Protocol):
    leading: asyncio.Event
    lost: asyncio.Event

    async def run(self, stop: asyncio.Event) -> None:
        """Campaign (and renew) until `stop`; keep `leading` and `lost` up to date."""


class SoleLeader:
    """Leads from the start, never loses (one reconciler per local stack)."""

    def __init__(self) -> None:
        self.leading = asyncio.Event()
        self.leading.set()
        self.lost = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()
