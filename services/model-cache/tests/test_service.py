"""The service end to end over a real NATS server: a job on ARKS_MODEL_JOBS, progress and
result events on ARKS_MODEL_EVENTS, the work queue drained, leases and pins taken."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from nats.aio.msg import Msg

from arks_common import subjects
from arks_common.events import ModelCacheJob, ModelCacheProgress, ModelCacheResult, decode_as
from arks_common.messaging import Bus
from arks_common.runtime import Service, run_until_stopped
from arks_common.settings import HealthSettings, NatsSettings
from arks_model_cache.leases import LeaseRegistry
from arks_model_cache.serving import SERVICE_NAME, lifespan
from arks_model_cache.settings import (
    CacheSettings,
    DownloadSettings,
    HubSettings,
    ModelCacheSettings,
)
from arks_model_cache.testing.fakehub import FakeHub, GeneratedContent

MiB = 1024 * 1024


@dataclass
class Events:
    progress: list[ModelCacheProgress] = field(default_factory=list)
    results: asyncio.Queue[ModelCacheResult] = field(default_factory=asyncio.Queue)

    async def result(self) -> ModelCacheResult:
        return await asyncio.wait_for(self.results.get(), 30)


@asynccontextmanager
async def running_service(
    bus: Bus, nats_url: str, hub: FakeHub, tmp_path: Path
) -> AsyncIterator[tuple[Events, ModelCacheSettings]]:
    settings = ModelCacheSettings(
        nats=NatsSettings(url=nats_url),
        health=HealthSettings(port=0),
        cache=CacheSettings(root=tmp_path / "cache"),
        hub=HubSettings(endpoint=hub.url),
        downloads=DownloadSettings(progress_interval=0.1, backoff_initial=0.05),
        secrets_dir=tmp_path / "secrets",
        max_concurrent_jobs=3,
    )
    events = Events()

    async def on_progress(msg: Msg) -> None:
        events.progress.append(decode_as(ModelCacheProgress, msg.data))

    async def on_result(msg: Msg) -> None:
        await events.results.put(decode_as(ModelCacheResult, msg.data))

    subs = [
        await bus.nc.subscribe(subjects.MODEL_PROGRESS_ALL, cb=on_progress),
        await bus.nc.subscribe(subjects.MODEL_RESULT_ALL, cb=on_result),
    ]
    stop = asyncio.Event()
    ready = asyncio.Event()

    def on_started(service: Service) -> None:
        ready.set()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(
            run_until_stopped(SERVICE_NAME, settings, lifespan, stop, on_started=on_started)
        )
        await asyncio.wait_for(ready.wait(), 20)
        try:
            yield events, settings
        finally:
            stop.set()
    for sub in subs:
        await sub.unsubscribe()


def job(**fields: object) -> ModelCacheJob:
    values: dict[str, object] = {"namespace": "team-a", "model_name": "e2e", "repo_id": "org/e2e"}
    values.update(fields)
    return ModelCacheJob(**values)  # type: ignore[arg-type]


async def submit(bus: Bus, request: ModelCacheJob) -> None:
    await bus.publish(subjects.model_job_subject(request.namespace, request.model_name), request)


async def test_job_progress_result_pin_and_preload(nats_server, bus: Bus, hub: FakeHub, tmp_path):
    weights = GeneratedContent(24 * MiB, 1)
    commit = hub.add_repo("org/e2e").commit({"config.json": "{}", "w.safetensors": weights})
    hub.throttle(60 * MiB)
    async with running_service(bus, nats_server.url, hub, tmp_path) as (events, settings):
        await submit(bus, job(id="job-1", pin=True, preload=True))
        result = await events.result()
        leases = LeaseRegistry(settings.cache.root / "arks" / "leases")
        held = {lease.holder: lease for lease in leases.all()}
        # The model no longer asks for a pin: the next job releases it.
        await submit(bus, job(id="job-2"))
        second = await events.result()
        unpinned = {lease.holder for lease in leases.all()}
        # A job is acknowledged right after its result is published.
        for _ in range(100):
            info = await bus.js.stream_info(subjects.MODEL_JOBS_STREAM)
            if info.state.messages == 0:
                break
            await asyncio.sleep(0.05)

    assert result.ok, result.message
    assert result.job_id == "job-1"
    assert result.commit == commit
    assert Path(result.path or "").name == commit
    assert (Path(result.path or "") / "w.safetensors").read_bytes() == weights.read(0, weights.size)
    assert result.size_bytes == 24 * MiB + 2
    assert result.files == 2
    assert result.preload_seconds is not None
    assert "downloaded 24.0 MiB" in result.message

    progress = [p for p in events.progress if p.job_id == "job-1"]
    assert len(progress) >= 2
    assert [p.bytes_done for p in progress] == sorted(p.bytes_done for p in progress)
    assert any(0 < p.bytes_done < p.bytes_total for p in progress)
    assert progress[-1].bytes_done == progress[-1].bytes_total == result.size_bytes
    assert progress[-1].files_done == progress[-1].files_total == 2
    assert all(p.namespace == "team-a" and p.model_name == "e2e" for p in progress)

    assert held["pin.team-a.e2e"].pinned
    assert held["pin.team-a.e2e"].commit == commit
    assert held["job.team-a.e2e"].expires_at is not None
    assert second.ok
    assert "cache hit" in second.message
    assert unpinned == {"job.team-a.e2e"}
    assert info.state.messages == 0  # work queue: every job was acknowledged
    assert hub.file_downloads("org/e2e", "w.safetensors") == 1


async def test_concurrent_jobs_share_a_download_and_failures_are_typed(
    nats_server, bus: Bus, hub: FakeHub, tmp_path
):
    hub.add_repo("org/e2e").commit({"w.safetensors": GeneratedContent(4 * MiB, 2)})
    hub.add_repo("org/gated", gated=True, authorized_tokens={"hf_team_b"}).commit(
        {"config.json": "{}"}
    )
    secret = tmp_path / "secrets" / "team-b" / "hf" / "HF_TOKEN"
    secret.parent.mkdir(parents=True)
    secret.write_text("hf_team_b\n")
    async with running_service(bus, nats_server.url, hub, tmp_path) as (events, _):
        with hub.hold_downloads() as release:
            await submit(bus, job(id="a-1", namespace="team-a"))
            await submit(bus, job(id="b-1", namespace="team-b"))
            assert await asyncio.to_thread(
                hub.wait_for, lambda h: h.started(method="GET", path_contains="/resolve/") >= 1
            )
            await asyncio.sleep(0.3)
            release.set()
            shared = [await events.result(), await events.result()]
        await submit(bus, job(id="g-1", repo_id="org/gated", model_name="gated"))
        denied = await events.result()
        await submit(
            bus,
            job(
                id="g-2",
                repo_id="org/gated",
                model_name="gated",
                namespace="team-b",
                token_secret="hf",
            ),
        )
        granted = await events.result()
        await submit(
            bus,
            job(
                id="g-3",
                repo_id="org/gated",
                model_name="gated",
                namespace="team-c",
                token_secret="hf",
            ),
        )
        no_secret = await events.result()
        await bus.js.publish(subjects.model_job_subject("team-a", "broken"), b'{"id": "x"}')
        for _ in range(100):
            dead = await bus.js.stream_info(subjects.DLQ_STREAM)
            if dead.state.messages:
                break
            await asyncio.sleep(0.05)

    assert sorted(r.job_id for r in shared) == ["a-1", "b-1"]
    assert all(r.ok for r in shared)
    assert shared[0].path == shared[1].path
    assert hub.file_downloads("org/e2e") == 1
    assert denied.ok is False
    assert denied.error_kind == "gated"
    assert denied.retryable is False
    assert granted.ok, granted.message
    assert no_secret.ok is False
    assert no_secret.error_kind == "unauthorized"
    assert "team-c/hf" in no_secret.message
    assert dead.state.messages == 1  # a malformed job is dead-lettered, not retried
