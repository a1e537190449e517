"""The HTTP surface: a raw ASGI application (no framework routing or per-request schema
validation on the hot path).

Routes: POST /v1/chat/completions, /v1/completions, /v1/embeddings; GET /v1/models,
/health, /ping, /version, /metrics. Inference handlers parse and tokenize the request,
plan its answer, hand a `SimRequest` to the engine and then either wait for the end
(unary) or write SSE chunks each time the engine wakes them (streaming). A task per
request watches for the client going away and aborts the sequence, as vLLM does.

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

from arks_engine_sim.errors import ApiError, bad_request
from arks_engine_sim.generating import plan_output, seed_material
from arks_engine_sim.loading import ModelRuntime
from arks_engine_sim.metrics import CONTENT_TYPE, EngineStats, MetricsEndpoint
from arks_engine_sim.parsing import (
    GenerationRequest,
    load_json,
    parse_chat,
    parse_completion,
    parse_embedding,
    resolve_max_tokens,
)
from arks_engine_sim.rendering import (
    DONE,
    JSON_HEADER,
    SSE_HEADERS,
    Identity,
    StreamRenderer,
    chat_response,
    completion_response,
    embedding_response,
    embedding_vector,
)
from arks_engine_sim.scheduling import Engine, SimRequest
from arks_engine_sim.settings import SimSettings
from arks_engine_sim.tokenizing import PromptTokens, render_chat

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


async def _send_bytes(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, status: int, body: bytes) -> None:
    await _send_bytes(send, status, body, [JSON_HEADER])


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
            await _send_json(send, 404, b'{"detail":"Not Found"}')
            return
        method, handler = route
        if scope["method"] != method:
            await _send_json(send, 405, b'{"detail":"Method Not Allowed"}')
            return
        if self._api_key is not None and scope["path"].startswith("/v1/"):
            given = _header(scope, b"authorization") or b""
            if not hmac.compare_digest(given, b"Bearer " + self._api_key):
                await _send_json(send, 401, b'{"error":"Unauthorized"}')
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
            await _send_json(send, 503, ApiError(503, "The model is loading.").body())
        else:
            await _send_bytes(send, 200, b"", [])

    async def _version(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _send_json(send, 200, orjson.dumps({"version": VERSION}))

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self.metrics.render()
        await _send_bytes(send, 200, body, [(b"content-type", CONTENT_TYPE.encode())])

    async def _models(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = self.runtime
        if runtime is None:
            await _send_json(send, 503, ApiError(503, "The model is loading.").body())
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
        await _send_json(send, 200, orjson.dumps({"object": "list", "data": cards}))

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

    async def _tokenize(self, runtime: ModelRuntime, request: GenerationRequest) -> PromptTokens:
        counter = runtime.counter
        if request.messages is not None:
            return await counter.encode(render_chat(request.messages), special=False)
        if request.prompt_text is not None:
            return await counter.encode(request.prompt_text, special=True)
        if request.prompt_ids is None:  # pragma: no cover - parse_completion guarantees one
            raise bad_request("`prompt` is required.", "prompt")
        return counter.encode_ids(request.prompt_ids)

    async def _generate(self, scope: Scope, receive: Receive, send: Send, *, chat: bool) -> None:
        arrival: float = scope.get(ARRIVAL_KEY) or time.monotonic()
        runtime = self.runtime
        if runtime is None:
            await _send_json(send, 503, ApiError(503, "The model is loading.").body())
            return
        raw = await _read_body(receive)
        if raw is None:
            return
        try:
            body = load_json(raw)
            request = parse_chat(body, self.served) if chat else parse_completion(body, self.served)
            prompt = await self._tokenize(runtime, request)
            max_tokens = resolve_max_tokens(
                prompt.count,
                request.max_tokens,
                runtime.max_model_len,
                prompt_param="messages" if chat else "prompt",
            )
        except ApiError as exc:
            await _send_json(send, exc.status, exc.body())
            return
        injected = self._inject_error()
        if injected is not None:
            await _send_json(send, injected.status, injected.body())
            return
        s = self.settings
        plan = plan_output(
            runtime.vocab,
            material=seed_material(
                request.seed, request.temperature, prompt.fingerprint, self._rng
            ),
            max_tokens=max_tokens,
            ignore_eos=request.ignore_eos,
            stop=request.stop,
            length_range=(s.output_len_min, s.output_len_max),
        )
        sim = SimRequest(
            prompt_len=prompt.count,
            block_hashes=prompt.block_hashes,
            plan=plan,
            stream=request.stream,
            arrival=arrival,
            hang_at=self._hang_at(),
        )
        identity = self._identity(scope, "chatcmpl" if chat else "cmpl", request.model)
        async with asyncio.TaskGroup() as tasks:
            watcher = tasks.create_task(self._watch_disconnect(receive, [sim]))
            try:
                if request.stream:
                    answered = await self._stream(send, runtime, request, sim, identity, chat)
                else:
                    answered = await self._unary(send, runtime, sim, identity, chat)
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

    async def _unary(
        self, send: Send, runtime: ModelRuntime, sim: SimRequest, identity: Identity, chat: bool
    ) -> bool:
        self.engine.submit(sim)
        while not sim.done:
            await sim.wait()
        plan = sim.plan
        if sim.aborted or plan is None:
            return False
        text = plan.text(runtime.vocab, sim.generated)
        render = chat_response if chat else completion_response
        body = render(identity, text, plan, sim.prompt_len, sim.generated, sim.cached_tokens)
        await _send_json(send, 200, body)
        return True

    async def _stream(
        self,
        send: Send,
        runtime: ModelRuntime,
        request: GenerationRequest,
        sim: SimRequest,
        identity: Identity,
        chat: bool,
    ) -> bool:
        plan = sim.plan
        if plan is None:  # pragma: no cover - generation requests always carry a plan
            raise RuntimeError("stream without an output plan")
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        renderer = StreamRenderer(
            identity,
            chat=chat,
            include_usage=request.include_usage,
            continuous=request.continuous_usage,
        )
        vocab = runtime.vocab
        self.engine.submit(sim)
        sent = 0
        while True:
            if sim.aborted:
                return False
            produced = sim.generated
            finished = sim.done
            body = b""
            if produced > sent:
                if sent == 0:
                    self.stats.ttft.observe(time.monotonic() - sim.arrival)
                body = renderer.tokens(
                    plan,
                    vocab,
                    sent,
                    produced,
                    last=finished,
                    prompt_tokens=sim.prompt_len,
                    cached=sim.cached_tokens,
                )
                sent = produced
            elif finished:
                body = renderer.finish_without_tokens(plan)
            if finished:
                if request.include_usage:
                    body += renderer.usage_chunk(sim.prompt_len, produced, sim.cached_tokens)
                await send({"type": "http.response.body", "body": body + DONE})
                return True
            if body:
                await send({"type": "http.response.body", "body": body, "more_body": True})
            await sim.wait()

    async def _embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        arrival: float = scope.get(ARRIVAL_KEY) or time.monotonic()
        runtime = self.runtime
        if runtime is None:
            await _send_json(send, 503, ApiError(503, "The model is loading.").body())
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
            await _send_json(send, exc.status, exc.body())
            return
        injected = self._inject_error()
        if injected is not None:
            await _send_json(send, injected.status, injected.body())
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
        await _send_json(send, 200, body)
        self._answered_one()
