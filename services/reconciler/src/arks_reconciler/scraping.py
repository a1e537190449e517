"""Engine load: scrape every ready replica's /metrics about once a second and publish.

Each tick scrapes all ready replicas concurrently (one request each, bounded by the
scrape timeout) and publishes one `EngineLoadSnapshot` per application on
`arks.load.<ns>.<app>` with core NATS: load is a frequent, superseded fact, so a lost
snapshot is simply replaced by the next. An application with no ready replica still gets
a snapshot (empty), so routers drop what they knew about it.

Failures: a replica whose scrape fails or times out is left out of that tick's snapshot
(it may be restarting; readiness is the supervisor's business); a publish failure is
logged and the loop goes on. Ticks never overlap: a slow tick delays the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from arks_common import events, subjects
from arks_common.messaging import Bus
from arks_common.store import ObjectRef
from arks_reconciler import load_metrics
from arks_reconciler.platform import Backend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScrapeTarget:
    ref: ObjectRef
    backends: Sequence[Backend]


Targets = Callable[[], Sequence[ScrapeTarget]]


class LoadScraper:
    def __init__(
        self,
        bus: Bus,
        client: httpx.AsyncClient,
        targets: Targets,
        *,
        interval: float,
        timeout: float,
    ) -> None:
        self.bus = bus
        self.client = client
        self.targets = targets
        self.interval = interval
        self.timeout = timeout
        self._previous: dict[str, load_metrics.EngineMetrics] = {}
        self._instance = uuid.uuid4().hex[:8]
        self._seq = 0
        self.ticks = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self.tick()
            except Exception:
                log.exception("engine load scrape failed")
            delay = self.interval - (time.monotonic() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(delay, 0.05))

    async def tick(self) -> None:
        targets = list(self.targets())
        urls = {b.url: b for t in targets for b in t.backends}
        results = await asyncio.gather(*(self._scrape(url) for url in urls))
        scraped = dict(zip(urls, results, strict=True))
        seen: set[str] = set()
        for target in targets:
            loads: list[events.ReplicaLoad] = []
            for backend in target.backends:
                metrics = scraped.get(backend.url)
                if metrics is None:
                    continue
                key = f"{backend.replica}@{backend.url}"
                seen.add(key)
                previous = self._previous.get(key)
                self._previous[key] = metrics
                loads.append(
                    load_metrics.replica_load(backend.replica, backend.url, metrics, previous)
                )
            await self._publish(target.ref, loads)
        for key in set(self._previous) - seen:
            del self._previous[key]
        self.ticks += 1

    async def _scrape(self, base_url: str) -> load_metrics.EngineMetrics | None:
        try:
            response = await self.client.get(f"{base_url}/metrics", timeout=self.timeout)
        except httpx.HTTPError as exc:
            log.debug("scrape of %s failed: %s", base_url, exc)
            return None
        if response.status_code != 200:
            return None
        return load_metrics.parse_engine_metrics(response.text)

    async def _publish(self, ref: ObjectRef, loads: list[events.ReplicaLoad]) -> None:
        self._seq += 1
        snapshot = events.EngineLoadSnapshot(
            id=f"load-{self._instance}-{self._seq}",
            namespace=ref.namespace,
            application=ref.name,
            replicas=loads,
        )
        try:
            await self.bus.publish_core(subjects.load_subject(ref.namespace, ref.name), snapshot)
        except Exception as exc:  # a NATS outage must not stop scraping
            log.warning("publishing load of %s/%s failed: %s", ref.namespace, ref.name, exc)
