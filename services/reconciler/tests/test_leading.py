"""Only the leader reconciles: a reconciler that is not leading neither watches nor
writes; once leading it syncs; losing leadership stops it with a retryable error (exit 75)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from arks_common import messaging
from arks_common.store import ResourceStore
from arks_reconciler.leading import LeadershipLost, SoleLeader
from arks_reconciler.reconciling import Reconciler
from arks_reconciler.testing import make_settings
from services.reconciler.tests.conftest import watched_local_platform

QUOTA = {
    "apiVersion": "arks.ai/v1",
    "kind": "ArksQuota",
    "metadata": {"name": "q", "namespace": "default"},
    "spec": {"quotas": [{"type": "prompt", "value": 10}]},
}


class Candidate:
    """A leadership handed out by the test."""

    def __init__(self) -> None:
        self.leading = asyncio.Event()
        self.lost = asyncio.Event()
        self.campaigning = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        self.campaigning.set()
        await stop.wait()


async def test_only_the_leader_reconciles_and_a_lost_lead_stops_it(
    nats_server: Any, data_dir: Path, bus: messaging.Bus
) -> None:
    settings = make_settings(nats_server.url, data_dir, stop_on_exit=True)
    await ResourceStore(bus).create(QUOTA)
    async with httpx.AsyncClient() as client:
        candidate = Candidate()
        platform, watched = watched_local_platform(settings, bus, client, candidate)
        reconciler = Reconciler(platform, bus, settings.queue)
        stop = asyncio.Event()
        task = asyncio.create_task(reconciler.run(stop))
        await asyncio.wait_for(candidate.campaigning.wait(), 10)
        for _ in range(20):
            await asyncio.sleep(0)
        assert not watched, "a candidate does not watch"
        assert not reconciler.synced.is_set()

        candidate.leading.set()
        await asyncio.wait_for(reconciler.synced.wait(), 10)
        assert watched

        candidate.lost.set()
        with pytest.raises(ExceptionGroup) as stopped:
            await asyncio.wait_for(task, 10)
        assert stopped.group_contains(LeadershipLost)


async def test_the_local_platform_leads_from_the_start() -> None:
    sole = SoleLeader()
    assert sole.leading.is_set()
    assert not sole.lost.is_set()
    stop = asyncio.Event()
    stop.set()
    await sole.run(stop)
