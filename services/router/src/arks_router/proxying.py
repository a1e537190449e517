"""The proxy: an ASGI app that carries one request to an engine and the answer back.

Per request: admission (`admitting`), then the engine exchange while a watcher task
waits for the client to disconnect (a disconnect cancels the exchange, which closes
the upstream connection, so the engine stops generating), then accounting
(`accounting`), which always runs.

Engine exchange:
- Candidates are tried best first. A failure *before the response headers* (refused
  or reset connection, connect or read timeout) or a status in
  `upstream.retry_statuses` is retried once on the next candidate (or on the same
  one when it is the only one and the failure was a connection the engine had closed
  while idle). Every failure counts towards outlier ejection.
- `text/event-stream` answers are streamed: each complete SSE event goes to the client
  as it arrives (nothing waits for the whole response), through `StreamMeter`, which
  keeps the usage and strips the injected usage chunk. A stream that breaks ends with
  an SSE `error` event and is charged from what was streamed.
- Other 2xx answers are read whole (they are one JSON document whose `usage` comes
  last) and sent with their length.
- Non-2xx answers become the OpenAI error envelope with the engine's status kept.

Headers: the client's `authorization`, cookies and API-key headers never reach an
engine, nor do client-sent `model` / `namespace` / `username` headers: the router sets
those itself (upstream's contract) along with `x-request-id` and the trace context.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp
import orjson
from opentelemetry import propagate, trace

from arks_common import telemetry
from arks_common.events import Outcome
from arks_router import api_errors, engine_errors, metering
from arks_router.accounting import Accountant
from arks_router.admitting import Admitter, ClientGone
from arks_router.exchanges import API_KIND_KEY, Exchange, request_id_of
from arks_router.metrics import RouterMetrics
from arks_router.routing.base import Candidate
from arks_router.routing.selecting import Fleet
from arks_router.settings import RouterSettings

log = logging.getLogger(__name__)
tracer = telemetry.tracer(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_NOT_FORWARDED = frozenset(
    {
        b"host",
        b"authorization",
        b"proxy-authorization",
        b"cookie",
        b"x-api-key",
        b"api-key",
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"keep-alive",
        b"upgrade",
        b"te",
        b"trailer",
        b"expect",
        b"accept-encoding",
        b"model",
        b"namespace",
        b"username",
        b"x-request-id",
    }
)
_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})
_NOT_RETURNED = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-encoding",
        "server",
        "date",
        "x-request-id",
        "upgrade",
        "trailer",
        "te",
    }
)


class _Retry(Exception):
    """An attempt failed before the response headers; `error` is what to answer if
    no attempt is left."""

    def __init__(self, error: api_errors.ApiError, *, stale: bool = False) -> None:
        super().__init__(error.message)
        self.error = error
        self.stale = stale


class Proxy:
    def __init__(
        self,
        settings: RouterSettings,
        admitter: Admitter,
        accountant: Accountant,
        fleet: Fleet,
        session: aiohttp.ClientSession,
        metrics: RouterMetrics,
    ) -> None:
        self._settings = settings
        self._admitter = admitter
        self._accountant = accountant
        self._fleet = fleet
        self._session = session
        self._metrics = metrics
        self._retry_statuses = frozenset(settings.upstream.retry_statuses)
        # Spans cost ~50 us each; without an exporter nobody would see them, so the
        # router then only passes the client's trace context on to the engine.
        self._tracing = settings.telemetry.otlp_endpoint is not None
        self._error_body_bytes = settings.upstream.error_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        ex = Exchange(
            request_id=request_id_of(scope),
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b""),
            headers=scope["headers"],
            kind=scope[API_KIND_KEY],
        )
        self._metrics.in_flight.inc()
        try:
            if self._tracing:
                await self._traced(ex, receive, send)
            else:
                await self._handle(ex, receive, send)
        finally:
            self._metrics.in_flight.dec()

    async def _traced(self, ex: Exchange, receive: Receive, send: Send) -> None:
        carrier = {
            key.decode("latin-1"): value.decode("latin-1")
            for key, value in ex.headers
            if key in _TRACE_HEADERS
        }
        with tracer.start_as_current_span(
            "arks.router.request", context=propagate.extract(carrier), kind=trace.SpanKind.SERVER
        ) as span:
            try:
                await self._handle(ex, receive, send)
            finally:
                if span.is_recording():
                    span.set_attributes(
                        {
                            "http.request.method": ex.method,
                            "url.path": ex.path,
                            "http.response.status_code": ex.status,
                            "arks.request_id": ex.request_id,
                            "arks.namespace": ex.namespace,
                            "arks.endpoint": ex.endpoint_name,
                            "arks.backend": ex.backend.name if ex.backend else "",
                            "arks.outcome": ex.outcome.value,
                        }
                    )

    async def _handle(self, ex: Exchange, receive: Receive, send: Send) -> None:
        try:
            await self._admitter.admit(ex, receive)
        except api_errors.ApiError as error:
            ex.status = error.status
            self._accountant.rejected(ex, error)
            await self._send_error(send, error, ex)
            await self._accountant.finish(ex)
            return
        except ClientGone:
            ex.outcome = Outcome.CANCELLED
            await self._accountant.finish(ex)
            return
        try:
            await self._forward(ex, receive, send)
        except Exception:
            log.exception("request %s failed inside the router", ex.request_id)
            ex.outcome = Outcome.UPSTREAM_ERROR
            if not ex.response_started:
                internal = api_errors.ApiError(
                    500,
                    "The router failed to handle the request.",
                    code="internal_error",
                    type="server_error",
                )
                ex.status = 500
                await self._send_error(send, internal, ex)
        finally:
            await self._accountant.finish(ex)

    # ------------------------------------------------------------------ forwarding
    async def _forward(self, ex: Exchange, receive: Receive, send: Send) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                watcher = group.create_task(_watch_disconnect(receive, ex), name="client-watch")
                try:
                    await self._exchange(ex, send)
                finally:
                    watcher.cancel()
        except* ClientGone:
            ex.outcome = Outcome.CANCELLED
            if ex.status == 0:
                ex.status = 499  # nginx's "client closed request", for the metrics only
            if ex.usage is None and ex.upstream_started is not None:
                # The engine had the prompt; what it generated is unknown.
                self._estimate_usage(ex, 0)

    async def _exchange(self, ex: Exchange, send: Send) -> None:
        response = await self._open(ex, send)
        if response is None:
            return
        assert ex.backend is not None
        try:
            ex.status = response.status
            if not 200 <= response.status < 300:
                await self._relay_error(ex, response, send)
            elif response.content_type == "text/event-stream":
                await self._relay_stream(ex, response, send)
            else:
                await self._relay_body(ex, response, send)
        finally:
            ex.upstream_ended = time.perf_counter()
            response.close()
            self._fleet.release(ex.backend.url)

    async def _open(self, ex: Exchange, send: Send) -> aiohttp.ClientResponse | None:
        """The engine's response (headers received), or None after answering an error."""
        error = api_errors.no_backend(ex.endpoint_name)
        tried: list[Candidate] = []
        for attempt in range(2):
            candidate = _next_candidate(ex.ranked, tried)
            if candidate is None:
                break
            tried.append(candidate)
            if attempt:
                self._metrics.retries.labels(ex.namespace, ex.endpoint_name).inc()
            try:
                return await self._attempt(ex, candidate, last=attempt == 1)
            except _Retry as failed:
                error = failed.error
                if failed.stale and len(ex.ranked) == 1:
                    tried.clear()  # the only backend closed an idle connection: try it again
        ex.outcome = Outcome.UPSTREAM_ERROR
        ex.status = error.status
        await self._send_error(send, error, ex)
        return None

    async def _attempt(
        self, ex: Exchange, candidate: Candidate, *, last: bool
    ) -> aiohttp.ClientResponse:
        ex.backend = candidate
        if ex.upstream_started is None:
            ex.upstream_started = time.perf_counter()
        url = candidate.url + ex.path + (("?" + ex.query.decode("latin-1")) if ex.query else "")
        self._fleet.acquire(candidate.url)
        try:
            response = await self._session.request(
                ex.method,
                url,
                data=ex.body or None,
                headers=self._upstream_headers(ex),
                allow_redirects=False,
            )
        except BaseException as exc:
            self._fleet.release(candidate.url)
            if isinstance(exc, TimeoutError):
                self._failed(ex, candidate, "timeout")
                raise _Retry(api_errors.upstream_timeout(ex.endpoint_name)) from exc
            if isinstance(exc, aiohttp.ClientError):
                self._failed(ex, candidate, "connect")
                stale = isinstance(exc, aiohttp.ServerDisconnectedError)
                error = api_errors.upstream_unreachable(ex.endpoint_name)
                raise _Retry(error, stale=stale) from exc
            raise
        if response.status < 500:
            self._fleet.outliers.success(candidate.url)
            return response
        self._failed(ex, candidate, "status")
        if last or response.status not in self._retry_statuses or len(ex.ranked) < 2:
            return response
        try:
            body = await _read_error_body(response, self._error_body_bytes)
        finally:
            response.close()
            self._fleet.release(candidate.url)
        raise _Retry(engine_errors.translate(response.status, body))

    def _failed(self, ex: Exchange, candidate: Candidate, kind: str) -> None:
        self._metrics.upstream_errors.labels(
            ex.namespace, ex.endpoint_name, candidate.name, kind
        ).inc()
        if self._fleet.outliers.failure(candidate.url):
            log.warning(
                "ejecting backend %s (%s) after repeated failures", candidate.name, candidate.url
            )
            self._metrics.ejections.labels(candidate.name).inc()

    def _upstream_headers(self, ex: Exchange) -> list[tuple[str, str]]:
        headers = [
            (key.decode("latin-1"), value.decode("latin-1"))
            for key, value in ex.headers
            if key not in _NOT_FORWARDED and not (self._tracing and key in _TRACE_HEADERS)
        ]
        headers.append(("model", ex.endpoint_name))
        headers.append(("namespace", ex.namespace))
        headers.append(("username", ex.token_name))
        headers.append(("x-request-id", ex.request_id))
        if self._tracing:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            headers.extend(carrier.items())
        return headers

    # ------------------------------------------------------------------ relaying
    async def _relay_error(
        self, ex: Exchange, response: aiohttp.ClientResponse, send: Send
    ) -> None:
        body = await _read_error_body(response, self._error_body_bytes)
        ex.first_byte_at = time.perf_counter()
        ex.outcome = Outcome.UPSTREAM_ERROR if response.status >= 500 else Outcome.CLIENT_ERROR
        error = engine_errors.translate(response.status, body)
        retry_after = response.headers.get("retry-after")
        if retry_after:
            error.headers.append((b"retry-after", retry_after.encode("latin-1")))
        await self._send_error(send, error, ex)

    async def _relay_body(self, ex: Exchange, response: aiohttp.ClientResponse, send: Send) -> None:
        try:
            body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            assert ex.backend is not None
            self._failed(ex, ex.backend, "stream")
            ex.outcome = Outcome.UPSTREAM_ERROR
            error = (
                api_errors.upstream_timeout(ex.endpoint_name)
                if isinstance(exc, TimeoutError)
                else api_errors.upstream_unreachable(ex.endpoint_name)
            )
            ex.status = error.status
            await self._send_error(send, error, ex)
            return
        ex.first_byte_at = time.perf_counter()
        usage, model = metering.parse_body(body)
        ex.model = model
        if usage is not None:
            ex.usage, ex.usage_source = usage, "engine"
        else:
            self._estimate_usage(ex, 0)
        headers = self._response_headers(ex, response)
        headers.append((b"content-length", str(len(body)).encode()))
        ex.response_started = True
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        ex.response_finished = True
        await send({"type": "http.response.body", "body": body, "more_body": False})
        self._remember(ex)

    async def _relay_stream(
        self, ex: Exchange, response: aiohttp.ClientResponse, send: Send
    ) -> None:
        meter = metering.StreamMeter(strip_usage=ex.strip_usage)
        self._accountant.progress.opened(ex, meter)  # journaled as it goes, billed if we die
        ex.response_started = True
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": self._response_headers(ex, response),
            }
        )
        content = response.content
        broken: BaseException | None = None
        try:
            while True:
                chunk = await content.readany()
                if not chunk:
                    break
                if ex.first_byte_at is None:
                    ex.first_byte_at = time.perf_counter()
                out = meter.feed(chunk)
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
        except (aiohttp.ClientError, TimeoutError) as exc:
            broken = exc
        except asyncio.CancelledError:
            self._metered(ex, meter)
            raise
        tail = meter.finish()
        if broken is not None or not meter.done:
            assert ex.backend is not None
            self._failed(ex, ex.backend, "stream")
            ex.outcome = Outcome.UPSTREAM_ERROR
            tail += _stream_error_event(ex, broken)
        self._metered(ex, meter)
        ex.response_finished = True
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        if broken is None:
            self._remember(ex)

    def _metered(self, ex: Exchange, meter: metering.StreamMeter) -> None:
        ex.model = meter.model
        if meter.usage is not None:
            ex.usage, ex.usage_source = meter.usage, "engine"
        else:
            self._estimate_usage(ex, meter.completion_estimate)

    def _estimate_usage(self, ex: Exchange, completion: int) -> None:
        ex.usage = metering.Usage(ex.estimate.prompt_tokens, completion)
        ex.usage_source = "estimated"

    def _remember(self, ex: Exchange) -> None:
        if ex.prefix_blocks and ex.backend is not None:
            homes = {c.url for c in ex.ranked}
            self._fleet.remember_prefix(ex.prefix_blocks, ex.backend.url, homes=homes)

    def _response_headers(
        self, ex: Exchange, response: aiohttp.ClientResponse
    ) -> list[tuple[bytes, bytes]]:
        headers = [
            (key, value)
            for key, value in response.raw_headers
            if key.decode("latin-1").lower() not in _NOT_RETURNED
        ]
        if ex.admission is not None:
            headers.extend(ex.admission.headers)
        return headers

    # ------------------------------------------------------------------ errors
    async def _send_error(self, send: Send, error: api_errors.ApiError, ex: Exchange) -> None:
        headers = error.response_headers()
        if ex.admission is not None and error.status != 429:
            headers.extend(ex.admission.headers)
        body = error.body()
        headers.append((b"content-length", str(len(body)).encode()))
        ex.response_started = True
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        ex.response_finished = True
        await send({"type": "http.response.body", "body": body, "more_body": False})


def _next_candidate(ranked: list[Candidate], tried: list[Candidate]) -> Candidate | None:
    for candidate in ranked:
        if candidate not in tried:
            return candidate
    return None


async def _watch_disconnect(receive: Receive, ex: Exchange) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if ex.response_finished:
                return  # the server reports the end of a response it has fully sent
            raise ClientGone


async def _read_error_body(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """Up to `limit` bytes of an error body (whatever arrived if the engine breaks off)."""
    chunks: list[bytes] = []
    size = 0
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        while size < limit:
            chunk = await response.content.read(limit - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    return b"".join(chunks)


def _stream_error_event(ex: Exchange, broken: BaseException | None) -> bytes:
    reason = (
        "the engine's stream broke" if broken is not None else "the engine's stream ended early"
    )
    payload = {
        "error": {
            "message": f"The response was cut short: {reason}.",
            "type": "server_error",
            "param": None,
            "code": "upstream_stream_broken",
        }
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"
