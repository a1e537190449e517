"""Response bodies: whole JSON documents for unary answers, and SSE byte templates for
streams.

A stream's chunks differ only in the token text and the finish fields, so each stream
pre-renders its fixed head and tails once and writes a chunk as `head + token JSON +
tail`, several chunks per write when the client fell behind. The shapes follow OpenAI's
(chat.completion, chat.completion.chunk, text_completion, embedding lists) with vLLM's
`stop_reason` extension; a usage chunk (empty `choices`) precedes `data: [DONE]` when
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

from arks_engine_sim.generating import OutputPlan
from arks_engine_sim.vocabulary import Vocabulary

DONE = b"data: [DONE]\n\n"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]
JSON_HEADER = (b"content-type", b"application/json")


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
    """Pre-encoded pieces of one stream; `tokens()` is the per-step hot path."""

    __slots__ = (
        "_common",
        "_end",
        "_open",
        "_tail",
        "chat",
        "continuous",
        "include_usage",
    )

    def __init__(
        self, identity: Identity, *, chat: bool, include_usage: bool, continuous: bool
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
        self.chat = chat
        self.include_usage = include_usage
        self.continuous = continuous
        self._open = self._common + (
            b'{"index":0,"delta":{"content":' if chat else b'{"index":0,"text":'
        )
        close = b"}" if chat else b""
        self._tail = close + b',"logprobs":null,"finish_reason":null}]'
        self._end = b',"usage":null}\n\n' if include_usage else b"}\n\n"

    def role_chunk(self) -> bytes:
        return (
            self._common
            + b'{"index":0,"delta":{"role":"assistant","content":""},'
            + b'"logprobs":null,"finish_reason":null}]'
            + self._end
        )

    def _final_tail(self, plan: OutputPlan) -> bytes:
        close = b"}" if self.chat else b""
        return b"".join(
            [
                close,
                b',"logprobs":null,"finish_reason":"',
                plan.finish_reason.encode(),
                b'","stop_reason":',
                orjson.dumps(plan.stop_reason),
                b"}]",
            ]
        )

    def tokens(
        self,
        plan: OutputPlan,
        vocab: Vocabulary,
        start: int,
        end: int,
        *,
        last: bool,
        prompt_tokens: int,
        cached: int,
    ) -> bytes:
        parts: list[bytes] = []
        if start == 0 and self.chat:
            parts.append(self.role_chunk())
        opening, tail, ending = self._open, self._tail, self._end
        for index in range(start, end):
            parts.append(opening)
            parts.append(plan.piece_json(vocab, index))
            parts.append(self._final_tail(plan) if last and index == end - 1 else tail)
            if self.continuous:
                parts.append(b',"usage":')
                parts.append(orjson.dumps(usage(prompt_tokens, index + 1, cached)))
                parts.append(b"}\n\n")
            else:
                parts.append(ending)
        return b"".join(parts)

    def finish_without_tokens(self, plan: OutputPlan) -> bytes:
        """A final chunk when the last step produced no new token to carry it."""
        piece = b'""'
        return self._open + piece + self._final_tail(plan) + self._end

    def usage_chunk(self, prompt_tokens: int, completion: int, cached: int) -> bytes:
        return (
            self._common
            + b'],"usage":'
            + orjson.dumps(usage(prompt_tokens, completion, cached))
            + b"}\n\n"
        )


def chat_response(
    identity: Identity, text: str, plan: OutputPlan, prompt: int, completion: int, cached: int
) -> bytes:
    return orjson.dumps(
        {
            "id": identity.id,
            "object": "chat.completion",
            "created": identity.created,
            "model": identity.model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": text,
                        "refusal": None,
                        "tool_calls": [],
                    },
                    "logprobs": None,
                    "finish_reason": plan.finish_reason,
                    "stop_reason": plan.stop_reason,
                }
            ],
            "usage": usage(prompt, completion, cached),
            "system_fingerprint": identity.fingerprint,
        }
    )


def completion_response(
    identity: Identity, text: str, plan: OutputPlan, prompt: int, completion: int, cached: int
) -> bytes:
    return orjson.dumps(
        {
            "id": identity.id,
            "object": "text_completion",
            "created": identity.created,
            "model": identity.model,
            "choices": [
                {
                    "index": 0,
                    "text": text,
                    "logprobs": None,
                    "finish_reason": plan.finish_reason,
                    "stop_reason": plan.stop_reason,
                }
            ],
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
