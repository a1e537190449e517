"""One model-cache job, from request to result: the code path both modes share.

The long-running service (jobs from NATS, events to NATS) and the one-shot
`arks-model-cache download` (a job from the command line, events to the console and
the Kubernetes termination log) both call `run_job()`; only the `EventSink` differs.

A job takes two leases on the snapshot it gets: `job.<namespace>.<model>` for
`job_lease_seconds` (so the application that asked can take its own lease before an
eviction could remove the files), and `pin.<namespace>.<model>` without expiry when the
job says `pin`; a job without `pin` releases that pin, so the ArksModel's current spec
decides. Every failure becomes a result with its kind, message and retry verdict; only
cancellation escapes.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from arks_common.events import (
    ModelCacheErrorKind,
    ModelCacheJob,
    ModelCacheProgress,
    ModelCacheResult,
)
from arks_model_cache.caching import CachedModel, Hold, ModelCache
from arks_model_cache.credentials import token_from_secret
from arks_model_cache.failures import DownloadFailure
from arks_model_cache.materializing import materialize
from arks_model_cache.specs import HubAccess, ModelSpec
from arks_model_cache.tracking import ProgressSnapshot


class EventSink(Protocol):
    async def progress(self, event: ModelCacheProgress) -> None: ...

    async def result(self, event: ModelCacheResult) -> None: ...


@dataclass(frozen=True)
class JobOptions:
    access: HubAccess
    """Endpoint, default token and offline flag; a job's token secret overrides the token."""
    secrets_dir: Path
    progress_interval: float = 1.0
    preload: bool = False
    """Preload every job's model, whether the job asks or not."""
    job_lease_seconds: float = 900.0
    local_dir: Path | None = None
    """One-shot mode: also place the files at this directory (hard links)."""


def job_holder(namespace: str, model: str) -> str:
    return f"job.{namespace}.{model}"


def pin_holder(namespace: str, model: str) -> str:
    return f"pin.{namespace}.{model}"


def progress_event(job: ModelCacheJob, seq: int, snap: ProgressSnapshot) -> ModelCacheProgress:
    return ModelCacheProgress(
        id=f"{job.id}.progress.{seq}",
        job_id=job.id,
        namespace=job.namespace,
        model_name=job.model_name,
        repo_id=job.repo_id,
        revision=job.revision,
        bytes_done=snap.bytes_done,
        bytes_total=snap.bytes_total,
        files_done=snap.files_done,
        files_total=snap.files_total,
        rate_bytes_per_s=snap.rate_bytes_per_s,
    )


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def describe(model: CachedModel) -> str:
    what = f"{len(model.files)} files ({_size(model.size_bytes)}) at commit {model.commit[:12]}"
    if model.fetched_bytes:
        how = f"downloaded {_size(model.fetched_bytes)}"
    elif model.waited:
        how = "downloaded once by a concurrent request"
    elif not model.from_hub:
        how = "served from the cache without the Hub (offline or unreachable)"
    else:
        how = "cache hit"
    return f"{what}: {how}"


async def run_job(
    job: ModelCacheJob, cache: ModelCache, sink: EventSink, options: JobOptions
) -> ModelCacheResult:
    spec = ModelSpec.from_job(job)
    seq = itertools.count(1)

    async def on_progress(snap: ProgressSnapshot) -> None:
        await sink.progress(progress_event(job, next(seq), snap))

    try:
        access = options.access
        if job.token_secret:
            token = await asyncio.to_thread(
                token_from_secret, options.secrets_dir, job.namespace, job.token_secret
            )
            access = replace(access, token=token)
        holds = [Hold(job_holder(job.namespace, job.model_name), options.job_lease_seconds)]
        if job.pin:
            holds.append(Hold(pin_holder(job.namespace, job.model_name), pinned=True))
        model = await cache.ensure(
            spec,
            access,
            holds=holds,
            on_progress=on_progress,
            progress_interval=options.progress_interval,
        )
        if not job.pin:
            await cache.release(pin_holder(job.namespace, job.model_name))
        path = model.path
        if options.local_dir is not None:
            await _place(model, options.local_dir)
            path = options.local_dir
        preload_seconds = None
        if job.preload or options.preload:
            preload_seconds = round((await cache.preload(model)).seconds, 3)
        result = _result(
            job,
            ok=True,
            commit=model.commit,
            path=str(path),
            size_bytes=model.size_bytes,
            files=len(model.files),
            message=describe(model),
            preload_seconds=preload_seconds,
        )
    except DownloadFailure as failure:
        result = _result(
            job,
            ok=False,
            error_kind=failure.kind,
            message=failure.message,
            retryable=failure.retryable,
        )
    await sink.result(result)
    return result


def _result(
    job: ModelCacheJob,
    *,
    ok: bool,
    commit: str | None = None,
    path: str | None = None,
    size_bytes: int = 0,
    files: int = 0,
    error_kind: ModelCacheErrorKind | None = None,
    message: str = "",
    retryable: bool = False,
    preload_seconds: float | None = None,
) -> ModelCacheResult:
    return ModelCacheResult(
        id=f"{job.id}.result",
        job_id=job.id,
        namespace=job.namespace,
        model_name=job.model_name,
        repo_id=job.repo_id,
        revision=job.revision,
        ok=ok,
        commit=commit,
        path=path,
        size_bytes=size_bytes,
        files=files,
        error_kind=error_kind,
        message=message,
        retryable=retryable,
        preload_seconds=preload_seconds,
    )


async def _place(model: CachedModel, local_dir: Path) -> None:
    try:
        await asyncio.to_thread(materialize, model.files, local_dir)
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        raise DownloadFailure(
            ModelCacheErrorKind.DISK_FULL if full else ModelCacheErrorKind.OTHER,
            f"cannot place the files of {model.spec.describe()} at {local_dir}: {exc}",
            retryable=full,
        ) from exc
