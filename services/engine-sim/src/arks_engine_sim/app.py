"""The HTTP surface: a raw ASGI application (no framework routing or per-request schema
validation on the hot path).

Routes: POST /v1/chat/completions, /v1/completions, /v1/embeddings; GET /v1/models,
/health, /ping, /version, /metrics. Generation requests go to answering.py (parse,
tokenize, plan, run, write); embeddings are handled here. A task per request watches for
the client going away and aborts its sequences, as vLLM does.

Failure modes: invalid requests get vLLM-shaped 400/404 JSON errors; while the model is
loading every /v1 route and /health answer 503; injected faults answer
`fault_error_status`, hang, or end the process (`fault_crash_after`, via `crash`).
Streaming TTFT is observed here, when the first token is handed to the socket, because
that is the moment the client can see it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import logging
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version

import orjson
from starlette.types import Message, Receive, Scope, Send

from arks_engine_sim.answering import Answering
from arks_engine_sim.errors import ApiError, bad_request
from arks_engine_sim.loading import ModelRuntime
from arks_engine_sim.metrics import CONTENT_TYPE, EngineStats, MetricsEndpoint
from arks_engine_sim.parsing import load_json, parse_embedding
from arks_engine_sim.rendering import (
    Identity,
    embedding_response,
    embedding_vector,
    send_bytes,
    send_json,
)
from arks_engine_sim.scheduling import Engine, SimRequest
from arks_engine_sim.settings import SimSettings

log = logging.getLogger(__name__)

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]
# Set by serving.ArrivalStampingProtocol when the request's first bytes are parsed.
ARRIVAL_KEY = "arks_sim.arrival"

try:
    VERSION = version("arks-engine-sim")
except PackageNotFoundError:  # pragma: no cover - only when run from a bare checkout
    VERSION = "0+unknown"


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client disconnected first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _exit_process(code: int) -> None:
    log.critical("injected fault: crashing with exit code %d", code)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)


class SimApp:
    def __init__(
        self,
        settings: SimSettings,
        engine: Engine,
        stats: EngineStats,
        metrics: MetricsEndpoint,
        *,
        crash: Callable[[int], None] = _exit_process,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.stats = stats
        self.metrics = metrics
        self.crash = crash
        self.runtime: ModelRuntime | None = None
        self.served = settings.model_names
        self.started = int(time.time())
        self._rng = random.Random(settings.seed)
        self.answering = Answering(settings, engine, stats, self._rng)
        self._ids = itertools.count(1)
        self._id_base = os.urandom(4).hex()
        self._answered = 0
        self._api_key = settings.api_key.encode() if settings.api_key else None
        config = f"{settings.model}|{settings.max_num_seqs}|{settings.block_size}|{VERSION}"
        self.fingerprint = "fp_" + hashlib.blake2b(config.encode(), digest_size=5).hexdigest()
        self._routes: dict[str, tuple[str, Handler]] = {
            "/v1/chat/completions": ("POST", self._chat),
            "/v1/completions": ("POST", self._completion),
            "/v1/embeddings": ("POST", self._embeddings),
            "/v1/models": ("GET", self._models),
            "/health": ("GET", self._health),
            "/ping": ("GET", self._health),
            "/version": ("GET", self._version),
            "/metrics": ("GET", self._metrics),
        }

    @property
    def ready(self) -> bool:
        return self.runtime is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        route = self._routes.get(scope["path"])
        if route is None:
            await send_json(send, 404, b'{"detail":"Not Found"}')
            return
        method, handler = route
        if scope["method"] != method:
            await send_json(send, 405, b'{"detail":"Method Not Allowed"}')
            return
        if self._api_key is not None and scope["path"].startswith("/v1/"):
            given = _header(scope, b"authorization") or b""
            if not hmac.compare_digest(given, b"Bearer " + self._api_key):
                await send_json(send, 401, b'{"error":"Unauthorized"}')
                return
        await handler(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- plain endpoints ----------------------------------------------------------------
    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.runtime is None:
            await send_json(send, 503, ApiError(503, "The model is loading.").body())
        else:
            await send_bytes(send, 200, b"", [])

    async def _version(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, orjson.dumps({"version": VERSION}))

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self.metrics.render()
        await send_bytes(send, 200, body, [(b"content-type", CONTENT_TYPE.encode())])

    async def _models(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = self.runtime
        if runtime is None:
            await send_json(send, 503, ApiError(503, "The model is loading.").body())
            return
        s = self.settings
        metadata = {
            "tokenizer": runtime.counter.kind,
            "tokenizer_path": runtime.counter.source,
            "output_vocabulary": runtime.vocab.source,
            "time_scale": s.time_scale,
            "max_num_seqs": s.max_num_seqs,
            "max_num_batched_tokens": s.max_num_batched_tokens,
            "block_size": s.block_size,
            "num_kv_blocks": s.num_kv_blocks,
            "enable_prefix_caching": s.enable_prefix_caching,
            "tensor_parallel_size": s.tensor_parallel_size,
            "metrics_style": s.metrics_style,
        }
        cards = [
            {
                "id": name,
                "object": "model",
                "created": self.started,
                "owned_by": "vllm",
                "root": s.model,
                "parent": None,
                "max_model_len": runtime.max_model_len,
                "arks_sim": metadata,
            }
            for name in self.served
        ]
        await send_json(send, 200, orjson.dumps({"object": "list", "data": cards}))

    # -- inference ----------------------------------------------------------------------
    def _identity(self, scope: Scope, prefix: str, model: str) -> Identity:
        given = _header(scope, b"x-request-id")
        suffix = given.decode("latin-1") if given else f"{self._id_base}{next(self._ids):x}"
        return Identity(f"{prefix}-{suffix}", int(time.time()), model, self.fingerprint)

    def _inject_error(self) -> ApiError | None:
        if self.settings.fault_error_rate and self._rng.random() < self.settings.fault_error_rate:
            self.stats.fault("error")
            return ApiError(
                self.settings.fault_error_status, "Injected fault: simulated engine error."
            )
        return None

    def _hang_at(self) -> int | None:
        if self.settings.fault_hang_rate and self._rng.random() < self.settings.fault_hang_rate:
            self.stats.fault("hang")
            return self.settings.fault_hang_after_tokens
        return None

    def _answered_one(self) -> None:
        self._answered += 1
        limit = self.settings.fault_crash_after
        if limit is not None and self._answered >= limit:
            self.stats.fault("crash")
            self.crash(self.settings.fault_crash_exit_code)

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._generate(scope, receive, send, chat=True)

    async def _completion(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._generate(scope, receive, send, chat=False)

    async def _generate(self, scope: Scope, receive: Receive, send: Send, *, chat: bool) -> None:
        arrival: float = scope.get(ARRIVAL_KEY) or time.monotonic()
        runtime = self.runtime
        if runtime is None:
            await send_json(send, 503, ApiError(503, "The model is loading.").body())
            return
        raw = await _read_body(receive)
        if raw is None:
            return
        try:
            prepared = await self.answering.prepare(runtime, raw, chat=chat)
        except ApiError as exc:
            await send_json(send, exc.status, exc.body())
            return
        injected = self._inject_error()
        if injected is not None:
            await send_json(send, injected.status, injected.body())
            return
        sims = self.answering.sequences(prepared, arrival=arrival, hang_at=self._hang_at())
        identity = self._identity(scope, "chatcmpl" if chat else "cmpl", prepared.request.model)
        async with asyncio.TaskGroup() as tasks:
            watcher = tasks.create_task(self._watch_disconnect(receive, sims))
            try:
                answered = await self.answering.respond(send, runtime, prepared, sims, identity)
            finally:
                watcher.cancel()
        if answered:
            self._answered_one()

    async def _watch_disconnect(self, receive: Receive, sims: list[SimRequest]) -> None:
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                for sim in sims:
                    self.engine.abort(sim)
                return

    async def _embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        arrival: float = scope.get(ARRIVAL_KEY) or time.monotonic()
        runtime = self.runtime
        if runtime is None:
            await send_json(send, 503, ApiError(503, "The model is loading.").body())
            return
        raw = await _read_body(receive)
        if raw is None:
            return
        dim = self.settings.embedding_dim
        try:
            request = parse_embedding(load_json(raw), self.served, dim)
            if request.texts is not None:
                prompts = [await runtime.counter.encode(t, special=True) for t in request.texts]
            else:
                prompts = [runtime.counter.encode_ids(ids) for ids in request.token_ids or []]
            for prompt in prompts:
                if prompt.count > runtime.max_model_len:
                    raise bad_request(
                        f"This model's maximum context length is {runtime.max_model_len} "
                        f"tokens. However, an input has {prompt.count} tokens.",
                        "input",
                    )
        except ApiError as exc:
            await send_json(send, exc.status, exc.body())
            return
        injected = self._inject_error()
        if injected is not None:
            await send_json(send, injected.status, injected.body())
            return
        sims = [
            SimRequest(
                prompt_len=p.count,
                block_hashes=p.block_hashes,
                plan=None,
                stream=False,
                arrival=arrival,
            )
            for p in prompts
        ]
        async with asyncio.TaskGroup() as tasks:
            watcher = tasks.create_task(self._watch_disconnect(receive, sims))
            try:
                for sim in sims:
                    self.engine.submit(sim)
                for sim in sims:
                    while not sim.done:
                        await sim.wait()
            finally:
                watcher.cancel()
        if any(sim.aborted for sim in sims):
            return
        size = request.dimensions or dim
        vectors = [embedding_vector(p.fingerprint, size) for p in prompts]
        identity = self._identity(scope, "embd", request.model)
        body = embedding_response(
            identity,
            vectors,
            sum(p.count for p in prompts),
            base64_encoded=request.encoding_format == "base64",
        )
        await send_json(send, 200, body)
        self._answered_one()
