"""The long-running model-cache service: jobs from the ARKS_MODEL_JOBS work queue,
progress and results to ARKS_MODEL_EVENTS.

`max_concurrent_jobs` consumers pull one job at a time from the durable
`MODEL_CACHE_CONSUMER` (so a long download never keeps other jobs, such as cache
hits, waiting), heartbeat it while it runs (`in_progress`, so the ack deadline never
fires under a long download), run it through `handling.run_job`, and ack it once its
result is published. If the result cannot be published the job is nak'ed and handled
again later, which is idempotent (a cache hit, and the same result id). A malformed job
goes to the dead-letter stream.

A maintenance task removes stale partial downloads and dead leases and enforces the
size limit at start-up and every `maintenance_interval_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import cast

from nats.aio.msg import Msg

from arks_common import access, subjects
from arks_common.errors import RetryableError
from arks_common.events import ModelCacheJob, ModelCacheProgress, ModelCacheResult, decode_as
from arks_common.messaging import Bus, ConsumerSpec, per_message
from arks_common.runtime import Service, run_service
from arks_model_cache import downloading
from arks_model_cache.caching import ModelCache
from arks_model_cache.handling import JobOptions, run_job
from arks_model_cache.metrics import CacheMetrics
from arks_model_cache.settings import ModelCacheSettings
from arks_model_cache.specs import HubAccess

log = logging.getLogger(__name__)

SERVICE_NAME = "arks-model-cache"
ACK_WAIT_SECONDS = 30.0


def hub_access(settings: ModelCacheSettings) -> HubAccess:
    hub = settings.hub
    return HubAccess(
        endpoint=(hub.endpoint or downloading.default_endpoint()).rstrip("/"),
        token=hub.token.get_secret_value() if hub.token is not None else None,
        offline=hub.offline or downloading.offline_by_environment(),
        check_access=hub.check_access,
        etag_timeout=hub.etag_timeout,
        file_workers=hub.file_workers,
    )


def job_options(settings: ModelCacheSettings, *, local_dir: Path | None = None) -> JobOptions:
    return JobOptions(
        access=hub_access(settings),
        secrets_dir=settings.secrets_dir.expanduser().resolve(),
        progress_interval=settings.downloads.progress_interval,
        preload=settings.preload,
        job_lease_seconds=settings.cache.job_lease_seconds,
        local_dir=local_dir,
    )


def root_path(root: str | Path) -> Path:
    """An absolute cache root (abspath, not resolve(): cheap enough for the event loop)."""
    return Path(os.path.abspath(os.path.expanduser(root)))


class CacheRoots:
    """The open caches by root: the configured one, plus any a job names."""

    def __init__(self, settings: ModelCacheSettings, stack: AsyncExitStack) -> None:
        self._settings = settings
        self._stack = stack
        self._caches: dict[Path, ModelCache] = {}
        self._lock = asyncio.Lock()

    async def get(self, root: str | Path | None) -> ModelCache:
        path = root_path(root or self._settings.cache.root)
        async with self._lock:
            cache = self._caches.get(path)
            if cache is None:
                limit = self._settings.cache.size_limit
                cache = ModelCache.at(
                    path,
                    downloads=self._settings.downloads,
                    size_limit=int(limit) if limit is not None else None,
                    threads=self._settings.max_concurrent_jobs + 4,
                )
                await self._stack.enter_async_context(cache)
                self._caches[path] = cache
            return cache

    def all(self) -> list[ModelCache]:
        return list(self._caches.values())


class NatsSink:
    """Events of one job to ARKS_MODEL_EVENTS; progress is best effort, results are not."""

    def __init__(self, bus: Bus, job: ModelCacheJob) -> None:
        self._bus = bus
        self._progress = subjects.model_progress_subject(job.namespace, job.model_name)
        self._result = subjects.model_result_subject(job.namespace, job.model_name)

    async def progress(self, event: ModelCacheProgress) -> None:
        try:
            await self._bus.publish(self._progress, event)
        except RetryableError as exc:
            log.warning("dropped a progress event of job %s: %s", event.job_id, exc.message)

    async def result(self, event: ModelCacheResult) -> None:
        await self._bus.publish(self._result, event)


class JobHandler:
    def __init__(
        self,
        bus: Bus,
        roots: CacheRoots,
        options: JobOptions,
        metrics: CacheMetrics,
    ) -> None:
        self._bus = bus
        self._roots = roots
        self._options = options
        self._metrics = metrics

    async def handle(self, msg: Msg) -> None:
        job = decode_as(ModelCacheJob, msg.data)
        started = time.perf_counter()
        cache = await self._roots.get(job.cache_root)
        finished = asyncio.Event()
        failure: Exception | None = None
        async with asyncio.TaskGroup() as tg:
            tg.create_task(_heartbeat(msg, finished), name=f"heartbeat {job.id}")
            try:
                log.info(
                    "job %s: %s@%s for %s/%s",
                    job.id,
                    job.repo_id,
                    job.revision or "main",
                    job.namespace,
                    job.model_name,
                )
                result = await run_job(job, cache, NatsSink(self._bus, job), self._options)
            except Exception as exc:
                # Re-raised bare after the group, so a RetryableError still means "nak".
                failure = exc
            finally:
                finished.set()
        if failure is not None:
            raise failure
        self._metrics.observe(result, time.perf_counter() - started)
        log.info("job %s: %s", job.id, result.message if result.ok else f"failed: {result.message}")


async def _heartbeat(msg: Msg, finished: asyncio.Event) -> None:
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(finished.wait(), ACK_WAIT_SECONDS / 3)
        if finished.is_set():
            return
        try:
            await msg.in_progress()
        except Exception as exc:  # a lost heartbeat only risks a redelivery
            log.warning("job heartbeat failed: %s", exc)


async def _maintain(
    roots: CacheRoots, settings: ModelCacheSettings, metrics: CacheMetrics, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        for cache in roots.all():
            try:
                await cache.collect_garbage(settings.cache.incomplete_max_age_seconds)
                report = await cache.enforce_limit()
                if report is not None:
                    metrics.evicted.inc(len(report.evicted))
                inventory = await cache.inventory()
                metrics.cache_bytes.labels(root=str(cache.layout.root)).set(inventory.total_bytes)
            except OSError as exc:
                log.warning("maintenance of %s failed: %s", cache.layout.root, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.cache.maintenance_interval_seconds)


@contextlib.asynccontextmanager
async def lifespan(service: Service) -> AsyncIterator[None]:
    settings = cast(ModelCacheSettings, service.settings)
    downloading.configure_http(settings.hub.proxy)
    bus = await Bus.connect(settings.nats, name=service.name)
    try:
        await bus.ensure_own_topology(access.MODEL_CACHE)
        async with AsyncExitStack() as stack:
            roots = CacheRoots(settings, stack)
            await roots.get(None)
            metrics = CacheMetrics.create(service.registry)
            handler = JobHandler(bus, roots, job_options(settings), metrics)
            spec = ConsumerSpec(
                stream=subjects.MODEL_JOBS_STREAM,
                durable=subjects.MODEL_CACHE_CONSUMER,
                filter_subject=subjects.MODEL_JOBS_ALL,
                batch=1,
                max_ack_pending=max(1000, settings.max_concurrent_jobs),
                ack_wait=ACK_WAIT_SECONDS,
            )
            service.health.require("jobs")
            for index in range(settings.max_concurrent_jobs):
                service.spawn(
                    f"jobs-{index}",
                    bus.consume(
                        spec,
                        per_message(handler.handle),
                        stop=service.stop,
                        on_ready=lambda: service.health.set("jobs", True),
                    ),
                )
            service.spawn("maintenance", _maintain(roots, settings, metrics, service.stop))
            yield None
    finally:
        await bus.close()


def serve(settings: ModelCacheSettings | None = None) -> None:
    run_service(SERVICE_NAME, settings or ModelCacheSettings(), lifespan)
