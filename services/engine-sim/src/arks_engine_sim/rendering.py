"""Response bodies: whole JSON documents for unary answers, and SSE byte templates for
streams.

A stream's chunks differ only in the token text and the finish fields, so each choice's
stream pre-renders its fixed head and tails once and writes a chunk as `head + token
JSON + tail`, several chunks per write when the client fell behind. Tool calls stream as
vLLM streams them: the first delta of a call carries its `index`, `id`, `type` and
`function.name` with the first argument fragment, later deltas only fragments. The
shapes follow OpenAI's (chat.completion, chat.completion.chunk, text_completion,
embedding lists) with vLLM's `stop_reason` extension; with `n` > 1 every chunk carries
one choice and its `index`; a usage chunk (empty `choices`) precedes `data: [DONE]` when
`stream_options.include_usage` is set, and then every other chunk carries
`"usage": null` as OpenAI documents.
"""

from __future__ import annotations

import base64
import math
import random
from array import array
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import Send

from arks_engine_sim.generating import OutputPlan
from arks_engine_sim.logprobs import chat_logprobs, completion_logprobs
from arks_engine_sim.vocabulary import Vocabulary

DONE = b"data: [DONE]\n\n"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]
JSON_HEADER = (b"content-type", b"application/json")


async def send_bytes(
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


async def send_json(send: Send, status: int, body: bytes) -> None:
    await send_bytes(send, status, body, [JSON_HEADER])


@dataclass(frozen=True, slots=True)
class Identity:
    id: str
    created: int
    model: str
    fingerprint: str


def usage(prompt: int, completion: int, cached: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "total_tokens": prompt + completion,
        "completion_tokens": completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


class StreamRenderer:
    """Pre-encoded pieces of one choice's stream; `tokens()` is the per-step hot path.

    Plain text without logprobs takes the template path (`head + token JSON + tail`);
    tool-call deltas and logprobs are assembled per token."""

    __slots__ = (
        "_choice",
        "_close",
        "_common",
        "_end",
        "_open",
        "_tail",
        "chat",
        "continuous",
        "include_usage",
        "plain",
        "plan",
    )

    def __init__(
        self,
        identity: Identity,
        plan: OutputPlan,
        *,
        chat: bool,
        index: int = 0,
        include_usage: bool,
        continuous: bool,
    ) -> None:
        obj = b"chat.completion.chunk" if chat else b"text_completion"
        self._common = b"".join(
            [
                b'data: {"id":',
                orjson.dumps(identity.id),  # may come from a client's X-Request-Id
                b',"object":"',
                obj,
                b'","created":',
                str(identity.created).encode(),
                b',"model":',
                orjson.dumps(identity.model),
                b',"system_fingerprint":"',
                identity.fingerprint.encode(),
                b'","choices":[',
            ]
        )
        self.plan = plan
        self.plain = not plan.calls and plan.logprobs is None
        self.chat = chat
        self.include_usage = include_usage
        self.continuous = continuous
        self._choice = b'{"index":' + str(index).encode() + b","
        self._open = self._common + self._choice + (b'"delta":{"content":' if chat else b'"text":')
        self._close = b"}" if chat else b""
        self._tail = self._close + b',"logprobs":null,"finish_reason":null}]'
        self._end = b',"usage":null}\n\n' if include_usage else b"}\n\n"

    def role_chunk(self) -> bytes:
        return (
            self._common
            + self._choice
            + b'"delta":{"role":"assistant","content":""},'
            + b'"logprobs":null,"finish_reason":null}]'
            + self._end
        )

    def _logprobs(self, index: int | None) -> bytes:
        items = self.plan.logprobs
        if items is None or index is None:
            return b"null"
        shape = chat_logprobs if self.chat else completion_logprobs
        return orjson.dumps(shape(items[index : index + 1]))

    def _tail_for(self, index: int | None, final: bool) -> bytes:
        logprobs = self._logprobs(index)
        if not final:
            return self._close + b',"logprobs":' + logprobs + b',"finish_reason":null}]'
        plan = self.plan
        return b"".join(
            [
                self._close,
                b',"logprobs":',
                logprobs,
                b',"finish_reason":"',
                plan.finish_reason.encode(),
                b'","stop_reason":',
                orjson.dumps(plan.stop_reason),
                b"}]",
            ]
        )

    def _head_for(self, vocab: Vocabulary, index: int) -> bytes:
        """The chunk up to the end of its delta's payload (the tail closes it)."""
        plan = self.plan
        piece = plan.piece_json(vocab, index)
        for number, call in enumerate(plan.calls):
            if call.start <= index < call.end:
                if index == call.start:
                    delta = b'{"index":%d,"id":%b,"type":"function","function":{"name":%b,' % (
                        number,
                        orjson.dumps(call.id),
                        orjson.dumps(call.name),
                    )
                else:
                    delta = b'{"index":%d,"function":{' % number
                return (
                    self._common
                    + self._choice
                    + b'"delta":{"tool_calls":['
                    + delta
                    + b'"arguments":'
                    + piece
                    + b"}}]"
                )
        return self._open + piece

    def tokens(
        self,
        vocab: Vocabulary,
        start: int,
        end: int,
        *,
        last: bool,
        prompt_tokens: int,
        cached: int,
        completed_before: int = 0,
    ) -> bytes:
        """Chunks for tokens [start, end); `completed_before`: tokens other choices have
        streamed already (for continuous usage)."""
        plan = self.plan
        parts: list[bytes] = []
        if start == 0 and self.chat:
            parts.append(self.role_chunk())
        opening, tail, ending = self._open, self._tail, self._end
        for index in range(start, end):
            final = last and index == end - 1
            if self.plain:
                parts.append(opening)
                parts.append(plan.piece_json(vocab, index))
                parts.append(self._tail_for(None, True) if final else tail)
            else:
                parts.append(self._head_for(vocab, index))
                parts.append(self._tail_for(index, final))
            if self.continuous:
                parts.append(b',"usage":')
                completion = completed_before + index + 1
                parts.append(orjson.dumps(usage(prompt_tokens, completion, cached)))
                parts.append(b"}\n\n")
            else:
                parts.append(ending)
        return b"".join(parts)

    def finish_without_tokens(self) -> bytes:
        """A final chunk when the last step produced no new token to carry it."""
        return self._open + b'""' + self._tail_for(None, True) + self._end

    def usage_chunk(self, prompt_tokens: int, completion: int, cached: int) -> bytes:
        return (
            self._common
            + b'],"usage":'
            + orjson.dumps(usage(prompt_tokens, completion, cached))
            + b"}\n\n"
        )


def chat_choice(index: int, plan: OutputPlan, vocab: Vocabulary, generated: int) -> dict[str, Any]:
    calls = [call for call in plan.calls if call.start < generated]
    tool_calls = [
        {
            "id": call.id,
            "type": "function",
            "function": {
                "name": call.name,
                "arguments": plan.text(vocab, min(call.end, generated), call.start),
            },
        }
        for call in calls
    ]
    logprobs = plan.logprobs
    return {
        "index": index,
        "message": {
            "role": "assistant",
            # A tool-calling answer has no text content (OpenAI sends null there).
            "content": None if calls else plan.text(vocab, generated),
            "refusal": None,
            "tool_calls": tool_calls,
        },
        "logprobs": None if logprobs is None else chat_logprobs(logprobs[:generated]),
        "finish_reason": plan.finish_reason,
        "stop_reason": plan.stop_reason,
    }


def completion_choice(
    index: int, plan: OutputPlan, vocab: Vocabulary, generated: int
) -> dict[str, Any]:
    logprobs = plan.logprobs
    return {
        "index": index,
        "text": plan.text(vocab, generated),
        "logprobs": None if logprobs is None else completion_logprobs(logprobs[:generated]),
        "finish_reason": plan.finish_reason,
        "stop_reason": plan.stop_reason,
    }


def generation_response(
    identity: Identity,
    choices: list[dict[str, Any]],
    *,
    chat: bool,
    prompt: int,
    completion: int,
    cached: int,
) -> bytes:
    return orjson.dumps(
        {
            "id": identity.id,
            "object": "chat.completion" if chat else "text_completion",
            "created": identity.created,
            "model": identity.model,
            "choices": choices,
            "usage": usage(prompt, completion, cached),
            "system_fingerprint": identity.fingerprint,
        }
    )


def embedding_vector(fingerprint: int, dim: int) -> list[float]:
    """A unit vector that depends only on the input (same input, same vector)."""
    rng = random.Random(fingerprint)
    values = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def embedding_response(
    identity: Identity,
    vectors: list[list[float]],
    prompt_tokens: int,
    *,
    base64_encoded: bool,
) -> bytes:
    data: list[dict[str, Any]] = []
    for index, vector in enumerate(vectors):
        value: str | list[float]
        if base64_encoded:
            value = base64.b64encode(array("f", vector).tobytes()).decode()
        else:
            value = vector
        data.append({"index": index, "object": "embedding", "embedding": value})
    return orjson.dumps(
        {
            "id": identity.id,
            "object": "list",
            "created": identity.created,
            "model": identity.model,
            "data": data,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }
    )
