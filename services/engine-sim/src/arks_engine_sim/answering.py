"""Answering chat and completion requests: parse and tokenize, plan every choice's answer
when the request arrives, run its sequences on the engine, and write the unary body or
the SSE stream.

Choice i of a request is planned as the same request with `seed + i` would be (as vLLM
seeds parallel samples), so choice 0 equals the n = 1 answer; under greedy decoding
without a seed every choice is the same. The n sequences are scheduled as one prefix
(see scheduling.py); `usage.completion_tokens` sums what every choice emitted, and the
prompt counts once. A stream interleaves the choices' chunks as their tokens come.

Failure modes: every validation problem (including a JSON Schema the simulator cannot
meet) raises `ApiError` from `prepare`, before anything is scheduled; a client that goes
away makes `respond` return False (the caller's watcher aborts the sequences).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from starlette.types import Send

from arks_engine_sim.errors import bad_request
from arks_engine_sim.generating import OutputPlan, plan_output, seed_material
from arks_engine_sim.loading import ModelRuntime
from arks_engine_sim.logprobs import model_logprobs
from arks_engine_sim.metrics import EngineStats
from arks_engine_sim.parsing import (
    GenerationRequest,
    load_json,
    parse_chat,
    parse_completion,
    resolve_max_tokens,
)
from arks_engine_sim.rendering import (
    DONE,
    SSE_HEADERS,
    Identity,
    StreamRenderer,
    chat_choice,
    completion_choice,
    generation_response,
    send_json,
)
from arks_engine_sim.scheduling import Engine, SimRequest, Waker
from arks_engine_sim.settings import SimSettings
from arks_engine_sim.structuring import plan_structure
from arks_engine_sim.tokenizing import PromptTokens, render_chat

# Independent draws for the structure and the logprobs of an answer, from its seed.
_STRUCTURE_SALT = 0x57C0
_LOGPROBS_SALT = 0x1090


@dataclass(frozen=True, slots=True)
class Prepared:
    request: GenerationRequest
    prompt: PromptTokens
    plans: list[OutputPlan]


class Answering:
    def __init__(
        self, settings: SimSettings, engine: Engine, stats: EngineStats, rng: random.Random
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.stats = stats
        self.rng = rng

    async def prepare(self, runtime: ModelRuntime, raw: bytes, *, chat: bool) -> Prepared:
        body = load_json(raw)
        parse = parse_chat if chat else parse_completion
        request = parse(body, self.settings)
        prompt = await self._tokenize(runtime, request)
        max_tokens = resolve_max_tokens(
            prompt.count,
            request.max_tokens,
            runtime.max_model_len,
            prompt_param="messages" if chat else "prompt",
        )
        plans = [
            self._plan(runtime, request, prompt, max_tokens, index) for index in range(request.n)
        ]
        return Prepared(request, prompt, plans)

    async def _tokenize(self, runtime: ModelRuntime, request: GenerationRequest) -> PromptTokens:
        counter = runtime.counter
        if request.messages is not None:
            tools = request.tool_use.prompt if request.tool_use is not None else None
            return await counter.encode(render_chat(request.messages, tools), special=False)
        if request.prompt_text is not None:
            return await counter.encode(request.prompt_text, special=True)
        if request.prompt_ids is None:  # pragma: no cover - parse_completion guarantees one
            raise bad_request("`prompt` is required.", "prompt")
        return counter.encode_ids(request.prompt_ids)

    def _plan(
        self,
        runtime: ModelRuntime,
        request: GenerationRequest,
        prompt: PromptTokens,
        max_tokens: int,
        index: int,
    ) -> OutputPlan:
        s = self.settings
        vocab = runtime.vocab
        seed = None if request.seed is None else request.seed + index
        material = seed_material(seed, request.temperature, prompt.fingerprint, self.rng)
        structure = plan_structure(
            request.tool_use,
            request.output_format,
            rng=random.Random(material ^ _STRUCTURE_SALT),
            words=vocab.words,
            counter=runtime.counter,
            tool_call_rate=s.tool_call_rate,
            after_tool_result=request.after_tool_result,
        )
        plan = plan_output(
            vocab,
            material=material,
            max_tokens=max_tokens,
            ignore_eos=request.ignore_eos,
            stop=request.stop,
            length_range=(s.output_len_min, s.output_len_max),
            structure=structure,
        )
        if request.logprobs is not None:
            plan.logprobs = model_logprobs(
                plan.piece_texts(vocab),
                request.logprobs,
                rng=random.Random(material ^ _LOGPROBS_SALT),
                alternatives=vocab.texts,
                greedy=request.temperature == 0.0,
            )
        return plan

    def sequences(
        self, prepared: Prepared, *, arrival: float, hang_at: int | None
    ) -> list[SimRequest]:
        waker = Waker()
        sims = [
            SimRequest(
                prompt_len=prepared.prompt.count,
                block_hashes=prepared.prompt.block_hashes,
                plan=plan,
                stream=prepared.request.stream,
                arrival=arrival,
                hang_at=hang_at,
                waker=waker,
            )
            for plan in prepared.plans
        ]
        sims[0].forks = sims[1:]
        return sims

    async def respond(
        self,
        send: Send,
        runtime: ModelRuntime,
        prepared: Prepared,
        sims: list[SimRequest],
        identity: Identity,
    ) -> bool:
        if prepared.request.stream:
            return await self._stream(send, runtime, prepared.request, sims, identity)
        return await self._unary(send, runtime, prepared.request, sims, identity)

    async def _unary(
        self,
        send: Send,
        runtime: ModelRuntime,
        request: GenerationRequest,
        sims: list[SimRequest],
        identity: Identity,
    ) -> bool:
        self.engine.submit(sims[0])
        waker = sims[0].waker
        while not all(sim.done for sim in sims):
            await waker.wait()
        if any(sim.aborted or sim.plan is None for sim in sims):
            return False
        chat = request.kind == "chat"
        render = chat_choice if chat else completion_choice
        choices = [
            render(index, sim.plan, runtime.vocab, sim.generated)
            for index, sim in enumerate(sims)
            if sim.plan is not None
        ]
        body = generation_response(
            identity,
            choices,
            chat=chat,
            prompt=sims[0].prompt_len,
            completion=sum(sim.generated for sim in sims),
            cached=sims[0].cached_tokens,
        )
        await send_json(send, 200, body)
        return True

    async def _stream(
        self,
        send: Send,
        runtime: ModelRuntime,
        request: GenerationRequest,
        sims: list[SimRequest],
        identity: Identity,
    ) -> bool:
        renderers: list[StreamRenderer] = []
        for index, sim in enumerate(sims):
            if sim.plan is None:  # pragma: no cover - generation requests carry a plan
                raise RuntimeError("stream without an output plan")
            renderers.append(
                StreamRenderer(
                    identity,
                    sim.plan,
                    chat=request.kind == "chat",
                    index=index,
                    include_usage=request.include_usage,
                    continuous=request.continuous_usage,
                )
            )
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        vocab = runtime.vocab
        parent = sims[0]
        waker = parent.waker
        self.engine.submit(parent)
        sent = [0] * len(sims)
        closed = [False] * len(sims)
        while True:
            parts: list[bytes] = []
            for index, sim in enumerate(sims):
                if sim.aborted:
                    return False
                if closed[index]:
                    continue
                produced = sim.generated
                finished = sim.done
                if produced > sent[index]:
                    if sent[index] == 0:
                        self.stats.ttft.observe(time.monotonic() - sim.arrival)
                    parts.append(
                        renderers[index].tokens(
                            vocab,
                            sent[index],
                            produced,
                            last=finished,
                            prompt_tokens=parent.prompt_len,
                            cached=parent.cached_tokens,
                            completed_before=sum(sent) - sent[index],
                        )
                    )
                    sent[index] = produced
                elif finished:
                    parts.append(renderers[index].finish_without_tokens())
                closed[index] = finished
            body = b"".join(parts)
            if all(closed):
                if request.include_usage:
                    body += renderers[0].usage_chunk(
                        parent.prompt_len, sum(sent), parent.cached_tokens
                    )
                await send({"type": "http.response.body", "body": body + DONE})
                return True
            if body:
                await send({"type": "http.response.body", "body": body, "more_body": True})
            await waker.wait()
