"""ArksModels with a Hugging Face source, through the model-cache service.

`ensure()` submits one `ModelCacheJob` per (model uid, generation, attempt) to
`arks.models.jobs.<ns>.<model>`; the job id is a hash of those, so resubmitting (after a
reconciler restart, or on every reconcile) is deduplicated by the stream, and a spec
change (a new generation) is a new job. Progress and results arrive on the
ARKS_MODEL_EVENTS stream, read by the consumer `arks-reconciler-model-events`, which is
recreated at start so that it replays the stream from its beginning: results of jobs
that finished while the reconciler was down are seen again. Each event for a model's
current job notifies the core, which then reflects progress in the ModelLoaded message
and the result's path as `status.path`.

Failures: a retryable result (network trouble) is resubmitted as a new attempt after
`RETRY_DELAY`; a permanent one (not found, gated, unauthorized) stays Failed until the
spec changes. Malformed events are dead-lettered by the consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg

from arks_common import events, messaging, resources, subjects
from arks_common.errors import PermanentError
from arks_common.messaging import Bus
from arks_common.store import ObjectRef
from arks_reconciler.platform import ModelObservation, ModelState, Notify

log = logging.getLogger(__name__)

RETRY_DELAY = 30.0
_KEEP_EVENTS = 2000

ModelEvent = events.ModelCacheProgress | events.ModelCacheResult


@dataclass
class _Job:
    uid: str
    generation: int
    attempt: int
    job_id: str
    submitted: bool = False
    failed_at: float | None = None


def job_id_for(model: resources.ArksModel, attempt: int = 0) -> str:
    meta = model.metadata
    blob = f"{meta.namespace}/{meta.name}/{meta.uid or ''}/{meta.generation or 0}/{attempt}"
    return "mj-" + hashlib.sha256(blob.encode()).hexdigest()[:32]


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


def progress_message(progress: events.ModelCacheProgress) -> str:
    what = progress.repo_id + (f"@{progress.revision}" if progress.revision else "")
    parts = []
    if progress.bytes_total:
        pct = 100.0 * progress.bytes_done / progress.bytes_total
        parts.append(f"{pct:.0f}% ({_size(progress.bytes_done)} of {_size(progress.bytes_total)})")
    elif progress.bytes_done:
        parts.append(_size(progress.bytes_done))
    if progress.files_total:
        parts.append(f"{progress.files_done}/{progress.files_total} files")
    if progress.rate_bytes_per_s:
        parts.append(f"{_size(progress.rate_bytes_per_s)}/s")
    return f"Downloading {what}" + (": " + ", ".join(parts) if parts else "")


class ModelCacheClient:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._jobs: dict[ObjectRef, _Job] = {}
        self._events: OrderedDict[str, ModelEvent] = OrderedDict()
        self._notify: Notify = lambda ref: None
        self.ready = asyncio.Event()

    # ------------------------------------------------------------------ events
    async def run(self, notify: Notify, stop: asyncio.Event) -> None:
        self._notify = notify
        with contextlib.suppress(nats.js.errors.NotFoundError, nats.errors.Error, OSError):
            # Start over from the stream's first event on every start (see the docstring).
            await self.bus.js.delete_consumer(
                subjects.MODEL_EVENTS_STREAM, subjects.RECONCILER_MODEL_EVENTS_CONSUMER
            )
        spec = messaging.ConsumerSpec(
            stream=subjects.MODEL_EVENTS_STREAM,
            durable=subjects.RECONCILER_MODEL_EVENTS_CONSUMER,
            filter_subject="",
            ack_wait=10.0,
            max_deliver=5,
            fetch_timeout=0.5,
        )
        await self.bus.consume(
            spec, messaging.per_message(self._handle), stop=stop, on_ready=self.ready.set
        )

    async def _handle(self, msg: Msg) -> None:
        message = events.decode(msg.headers, msg.data)
        if not isinstance(message, ModelEvent):
            raise PermanentError(f"unexpected {type(message).__name__} on {msg.subject}")
        self.observe(message)

    def observe(self, event: ModelEvent) -> None:
        """Remember an event; a progress event never replaces a result of the same job."""
        known = self._events.get(event.job_id)
        if isinstance(known, events.ModelCacheResult) and isinstance(
            event, events.ModelCacheProgress
        ):
            return
        self._events[event.job_id] = event
        self._events.move_to_end(event.job_id)
        while len(self._events) > _KEEP_EVENTS:
            self._events.popitem(last=False)
        ref = ObjectRef("ArksModel", event.namespace, event.model_name)
        job = self._jobs.get(ref)
        if job is not None and job.job_id == event.job_id:
            self._notify(ref)

    # ------------------------------------------------------------------ jobs
    def forget(self, ref: ObjectRef) -> None:
        self._jobs.pop(ref, None)

    async def ensure(self, model: resources.ArksModel) -> ModelObservation:
        source = model.spec.source
        assert source is not None
        assert source.huggingface is not None
        hf = source.huggingface
        ref = ObjectRef("ArksModel", model.namespace, model.name)
        uid, generation = model.metadata.uid or "", model.metadata.generation or 0
        job = self._jobs.get(ref)
        if job is None or job.uid != uid or job.generation != generation:
            job = _Job(uid, generation, 0, job_id_for(model, 0))
            self._jobs[ref] = job
        latest = self._events.get(job.job_id)
        if isinstance(latest, events.ModelCacheResult) and not latest.ok and latest.retryable:
            job.failed_at = job.failed_at or time.monotonic()
            wait = RETRY_DELAY - (time.monotonic() - job.failed_at)
            if wait > 0:
                return self._failed(latest, retry_after=wait)
            job.attempt += 1
            job.job_id = job_id_for(model, job.attempt)
            job.submitted = False
            job.failed_at = None
            latest = self._events.get(job.job_id)
        if isinstance(latest, events.ModelCacheResult):
            if latest.ok:
                detail = latest.repo_id + (f"@{latest.commit[:12]}" if latest.commit else "")
                if latest.size_bytes:
                    detail += f", {_size(latest.size_bytes)}"
                return ModelObservation(
                    state=ModelState.READY,
                    path=latest.path,
                    message=detail,
                    storage="model cache",
                    resolved_revision=latest.commit,
                    size_bytes=latest.size_bytes or None,
                )
            return self._failed(latest, retry_after=None)
        if not job.submitted:
            await self.bus.publish(
                subjects.model_job_subject(model.namespace, model.name),
                events.ModelCacheJob(
                    id=job.job_id,
                    namespace=model.namespace,
                    model_name=model.name,
                    repo_id=model.spec.model,
                    revision=hf.revision,
                    allow_patterns=hf.allow_patterns,
                    ignore_patterns=hf.ignore_patterns,
                    token_secret=hf.token_secret_ref.name if hf.token_secret_ref else None,
                    pin=model.spec.pin,
                    preload=model.spec.preload,
                ),
            )
            job.submitted = True
            log.info("submitted model job %s for %s/%s", job.job_id, model.namespace, model.name)
        if isinstance(latest, events.ModelCacheProgress):
            message = progress_message(latest)
        else:
            rev = hf.revision_or_default()
            message = (
                f"Waiting for the model cache (arks-model-cache) to download "
                f"{model.spec.model}@{rev}"
            )
        return ModelObservation(state=ModelState.LOADING, message=message, storage="model cache")

    @staticmethod
    def _failed(result: events.ModelCacheResult, *, retry_after: float | None) -> ModelObservation:
        kind = result.error_kind.value if result.error_kind else "error"
        message = f"Failed to load the model ({kind}): {result.message or 'no detail'}"
        if retry_after is not None:
            message += f"; retrying in {retry_after:.0f}s"
        return ModelObservation(
            state=ModelState.FAILED,
            message=message,
            storage="model cache",
            retry_after=retry_after,
        )
