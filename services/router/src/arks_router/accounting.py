"""The end of every request: usage event, window settlement, metrics.

Runs once per request, however it ended (answered, refused, failed, cancelled). For an
admitted request it publishes one `UsageRecorded` (id = request id, with the quota and
the period its reservation was made in, so the accountant can apply the usage and
release the reservation exactly once) *before* correcting the token windows, so that
nothing that happens during settlement can lose the event. Requests refused before
admission have nothing to charge or release and produce no event; they are counted
in the metrics.

Token counts: the engine's `usage` when it sent one (`usage_source="engine"`);
otherwise, for a broken or cancelled stream, the prompt estimate plus one token per
content-bearing chunk streamed (`"estimated"`); a request that never reached an
engine charges nothing (`"none"`).

While a stream is open, `progress` journals what it has delivered so far, so that a
router killed before `finish()` still has it billed (`arks_router.progress`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from arks_common import ledger, subjects
from arks_common.events import Outcome, UsageRecorded
from arks_router import api_errors
from arks_router.exchanges import Exchange, UsageSource
from arks_router.governing import Governor
from arks_router.metering import Usage
from arks_router.metrics import RouterMetrics
from arks_router.progress import StreamProgress
from arks_router.publishing import UsagePublisher


class Accountant:
    def __init__(
        self,
        governor: Governor,
        publisher: UsagePublisher,
        metrics: RouterMetrics,
        *,
        progress_interval: float = 1.0,
    ) -> None:
        self._governor = governor
        self._publisher = publisher
        self._metrics = metrics
        self.progress = StreamProgress(publisher, usage_event, progress_interval)
        """Open streams, journaled as they go (`arks_router.progress`)."""

    async def finish(self, ex: Exchange) -> None:
        ended = time.perf_counter()
        self.progress.closed(ex.request_id)
        self._observe(ex, ended)
        admission = ex.admission
        if admission is None or ex.endpoint is None:
            return
        usage = ex.usage or Usage(0, 0)
        self._publisher.record(
            subjects.usage_subject(ex.namespace, ex.endpoint.name),
            usage_event(ex, usage, ex.usage_source, ex.outcome, ended),
        )
        await self._governor.settle(admission, usage.total_tokens)

    def rejected(self, ex: Exchange, error: api_errors.ApiError) -> None:
        self._metrics.rejections.labels(ex.namespace, _reason(error), ex.quota or "").inc()

    # ------------------------------------------------------------------ internals
    def _observe(self, ex: Exchange, ended: float) -> None:
        metrics = self._metrics
        metrics.requests.labels(ex.namespace, ex.endpoint_name, str(ex.status)).inc()
        if ex.admission is None:
            return
        if ex.backend is not None and ex.status:
            metrics.replica_requests.labels(
                ex.namespace,
                ex.endpoint_name,
                ex.backend.name,
                ex.backend.replica or ex.backend.url,
            ).inc()
        duration, ttft, prompt, completion = metrics.request_children(
            ex.namespace, ex.endpoint_name
        )
        elapsed = ended - ex.started
        duration.observe(elapsed)
        if ex.first_byte_at is not None:
            ttft.observe(ex.first_byte_at - ex.started)
        if ex.upstream_started is not None:
            upstream = (ex.upstream_ended or ended) - ex.upstream_started
            metrics.overhead.observe(max(0.0, elapsed - upstream))
        if ex.usage is not None:
            if ex.usage_source == "engine":
                prompt.inc(ex.usage.prompt_tokens)
                completion.inc(ex.usage.completion_tokens)
            else:
                metrics.tokens.labels(
                    ex.namespace, ex.endpoint_name, "prompt", ex.usage_source
                ).inc(ex.usage.prompt_tokens)
                metrics.tokens.labels(
                    ex.namespace, ex.endpoint_name, "completion", ex.usage_source
                ).inc(ex.usage.completion_tokens)
        if ex.outcome is Outcome.CANCELLED:
            metrics.cancelled.labels(ex.namespace, ex.endpoint_name).inc()


def usage_event(
    ex: Exchange, usage: Usage, source: UsageSource, outcome: Outcome, ended: float
) -> UsageRecorded:
    """The request's usage event as of `ended` (a `time.perf_counter()` time)."""
    duration_ms = (ended - ex.started) * 1000.0
    ttft_ms = None if ex.first_byte_at is None else (ex.first_byte_at - ex.started) * 1000.0
    started_at = datetime.now(UTC) - timedelta(milliseconds=duration_ms)
    assert ex.admission is not None
    assert ex.endpoint is not None
    return UsageRecorded(
        id=ex.request_id,
        namespace=ex.namespace,
        token_name=ex.token_name,
        endpoint=ex.endpoint.name,
        backend=ex.backend.name if ex.backend is not None and ex.status else "",
        replica=ex.backend.replica if ex.backend is not None and ex.status else "",
        model=ex.model,
        quota=ex.quota,
        quota_period=ex.quota_period,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=usage.cached_tokens,
        reserved_tokens=ex.admission.reserved_tokens,
        outcome=outcome,
        status_code=ex.status or 0,
        usage_source=source,
        ttft_ms=ttft_ms,
        duration_ms=duration_ms,
        stream=ex.stream,
        started_at=started_at,
    )


_QUOTA_KINDS = frozenset(kind.value for kind in ledger.QuotaKind)


def _reason(error: api_errors.ApiError) -> str:
    code = error.code
    if error.status == 401:
        return "auth"
    if code == "rate_limit_exceeded":
        # a quota held by requests in flight names its kind; rate limits name their rule
        return "quota_held" if error.param in _QUOTA_KINDS else error.param or "rate"
    if code == "insufficient_quota":
        return "quota"
    if code in ("model_not_found", "model_not_permitted", "path_not_routed"):
        return "model"
    if code in ("governance_unavailable", "quota_unavailable"):
        return "governance"
    if code == "no_backend_available":
        return "no_backend"
    if code == "not_ready":
        return "not_ready"
    return "request"
