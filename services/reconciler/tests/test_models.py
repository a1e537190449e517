"""ArksModel through the model-cache protocol: job out, progress and result back.

The model-cache service had not landed when this was written, so the test plays its
part on the wire: it reads the ModelCacheJob the reconciler publishes and publishes
ModelCacheProgress / ModelCacheResult as the service would (same subjects and models).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from arks_common import events, messaging, subjects
from arks_common.store import ResourceStore
from arks_reconciler.local.models import job_id_for
from arks_reconciler.testing import (
    InProcessReconciler,
    app_obj,
    eventually,
    make_settings,
    model_obj,
    replica_records,
    typed,
)

HF = {"huggingface": {"revision": "v1", "allowPatterns": ["*.json", "*.safetensors"]}}


async def model_status(store: ResourceStore, name: str) -> dict[str, Any]:
    obj = await store.get("ArksModel", "default", name)
    return (obj or {}).get("status") or {}


def loaded_message(status: dict[str, Any]) -> str:
    for cond in status.get("conditions") or []:
        if cond["type"] == "ModelLoaded":
            return str(cond.get("message") or "")
    return ""


class JobInbox:
    """Model jobs as the model-cache service would receive them."""

    def __init__(self) -> None:
        self.jobs: asyncio.Queue[events.ModelCacheJob] = asyncio.Queue()

    async def on_job(self, msg: Any) -> None:
        self.jobs.put_nowait(events.ModelCacheJob.from_bytes(msg.data))

    async def next(self) -> events.ModelCacheJob:
        return await asyncio.wait_for(self.jobs.get(), 15)


async def test_download_progress_result_and_failure(
    reconciler: InProcessReconciler, bus: messaging.Bus, store: ResourceStore, tmp_path: Path
) -> None:
    inbox = JobInbox()
    sub = await bus.nc.subscribe(subjects.MODEL_JOBS_ALL, cb=inbox.on_job)
    try:
        await store.apply(model_obj("qwen-hf", source=HF))
        await store.apply(app_obj(model={"name": "qwen-hf"}, servedModelName="qwen-7b"))
        job = await inbox.next()
        stored = await store.get("ArksModel", "default", "qwen-hf")
        assert stored is not None
        assert job.id == job_id_for(typed(stored))
        assert (job.namespace, job.model_name, job.repo_id) == (
            "default",
            "qwen-hf",
            "Qwen/Qwen2.5-7B-Instruct",
        )
        assert job.revision == "v1"
        assert job.allow_patterns == ["*.json", "*.safetensors"]

        await eventually(
            lambda: _phase(store, "ArksModel", "qwen-hf", "ModelLoading"), what="ModelLoading"
        )
        app = await eventually(
            lambda: _phase(store, "ArksApplication", "app-qwen", "Loading"), what="app Loading"
        )
        assert "qwen-hf" in str(app["conditions"])

        progress = events.ModelCacheProgress(
            id=f"{job.id}-p1",
            job_id=job.id,
            namespace="default",
            model_name="qwen-hf",
            repo_id=job.repo_id,
            revision="v1",
            bytes_done=500_000_000,
            bytes_total=1_000_000_000,
            files_done=1,
            files_total=4,
        )
        await bus.publish(subjects.model_progress_subject("default", "qwen-hf"), progress)
        status = await eventually(
            lambda: _message_has(store, "qwen-hf", "50%"), what="progress in the condition"
        )
        assert "1/4 files" in loaded_message(status)

        path = tmp_path / "cache" / "snapshots" / "abc123"
        result = events.ModelCacheResult(
            id=f"{job.id}-result",
            job_id=job.id,
            namespace="default",
            model_name="qwen-hf",
            repo_id=job.repo_id,
            revision="v1",
            ok=True,
            commit="abc123def4567890",
            path=str(path),
            size_bytes=1_000_000_000,
            files=4,
        )
        await bus.publish(subjects.model_result_subject("default", "qwen-hf"), result)
        ready = await eventually(
            lambda: _phase(store, "ArksModel", "qwen-hf", "Ready"), what="model Ready"
        )
        assert ready["path"] == str(path)
        assert ready["resolvedRevision"] == "abc123def4567890"
        assert ready["sizeBytes"] == 1_000_000_000
        await eventually(
            lambda: _phase(store, "ArksApplication", "app-qwen", "Running"), what="app Running"
        )
        records = await replica_records(bus)
        assert len(records) == 1
        argv = records[0].argv
        assert argv[argv.index("--model") + 1] == str(path)

        # A permanent failure: Failed with the reason, and the application says why.
        await store.apply(model_obj("missing", source={"huggingface": {}}, model="no/such-repo"))
        await store.apply(app_obj("app-missing", model={"name": "missing"}))
        job = await inbox.next()
        failure = events.ModelCacheResult(
            id=f"{job.id}-result",
            job_id=job.id,
            namespace="default",
            model_name="missing",
            repo_id="no/such-repo",
            ok=False,
            error_kind=events.ModelCacheErrorKind.NOT_FOUND,
            message="Repository no/such-repo not found",
        )
        await bus.publish(subjects.model_result_subject("default", "missing"), failure)
        failed = await eventually(
            lambda: _phase(store, "ArksModel", "missing", "Failed"), what="model Failed"
        )
        assert "not_found" in loaded_message(failed)
        app_failed = await eventually(
            lambda: _phase(store, "ArksApplication", "app-missing", "Failed"), what="app Failed"
        )
        assert "ModelLoadFailed" in str(app_failed["conditions"])

        # Not terminal: fixing the spec submits a new job.
        await store.apply(model_obj("missing", source={"huggingface": {}}, model="real/repo"))
        fixed = await inbox.next()
        assert fixed.repo_id == "real/repo"
        assert fixed.id != job.id
        await eventually(
            lambda: _phase(store, "ArksModel", "missing", "ModelLoading"), what="loading again"
        )
    finally:
        await sub.unsubscribe()


async def test_results_published_while_the_reconciler_is_down_are_seen(
    nats_server: Any, bus: messaging.Bus, store: ResourceStore, data_dir: Path
) -> None:
    settings = make_settings(nats_server.url, data_dir, stop_on_exit=True)
    inbox = JobInbox()
    sub = await bus.nc.subscribe(subjects.MODEL_JOBS_ALL, cb=inbox.on_job)
    first = InProcessReconciler(settings)
    await first.start()
    try:
        await store.apply(model_obj("qwen-hf", source=HF))
        job = await inbox.next()
        await eventually(
            lambda: _phase(store, "ArksModel", "qwen-hf", "ModelLoading"), what="ModelLoading"
        )
    finally:
        await first.stop()
    result = events.ModelCacheResult(
        id=f"{job.id}-result",
        job_id=job.id,
        namespace="default",
        model_name="qwen-hf",
        repo_id=job.repo_id,
        ok=True,
        path="/cache/qwen",
    )
    await bus.publish(subjects.model_result_subject("default", "qwen-hf"), result)
    second = InProcessReconciler(settings)
    await second.start()
    try:
        ready = await eventually(
            lambda: _phase(store, "ArksModel", "qwen-hf", "Ready"), what="Ready after restart"
        )
        assert ready["path"] == "/cache/qwen"
    finally:
        await second.stop()
        await sub.unsubscribe()


async def _phase(store: ResourceStore, kind: str, name: str, phase: str) -> dict[str, Any] | None:
    obj = await store.get(kind, "default", name)
    status = (obj or {}).get("status") or {}
    return status if status.get("phase") == phase else None


async def _message_has(store: ResourceStore, name: str, text: str) -> dict[str, Any] | None:
    status = await model_status(store, name)
    return status if text in loaded_message(status) else None
