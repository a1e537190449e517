"""Modelled log probabilities: per generated token its logprob and the top-k
alternatives, and their OpenAI shapes (chat and legacy completions).

At each position the model draws a decreasing distribution over k + 1 candidates (the
top-k and the best token outside them); the emitted token takes rank 1 under greedy
decoding (temperature 0), otherwise a rank drawn from that distribution (rank k + 1:
outside the top-k, as sampling can pick). Alternatives are other vocabulary entries.
Every logprob is < 0 and the top-k are sorted. The draws come from the answer's seeded
RNG, so a seeded request returns the same logprobs.

Shapes: chat `{"content": [{token, logprob, bytes, top_logprobs: [{token, logprob,
bytes}]}], "refusal": null}`; completions `{tokens, token_logprobs, top_logprobs:
[{token: logprob}] (top-k plus the emitted token, as OpenAI documents), text_offset}`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: str
    logprob: float
    top: list[tuple[str, float]]  # the k most likely, best first
    offset: int  # characters of answer text before this token


def _distribution(rng: random.Random, size: int) -> list[float]:
    probabilities: list[float] = []
    remaining = 1.0
    for index in range(size):
        share = rng.uniform(0.35, 0.95) if index == 0 else rng.uniform(0.15, 0.6)
        p = remaining * share
        if probabilities:
            p = min(p, probabilities[-1] * 0.999)
        probabilities.append(p)
        remaining -= p
    return probabilities


def model_logprobs(
    texts: Sequence[str],
    k: int,
    *,
    rng: random.Random,
    alternatives: Sequence[str],
    greedy: bool,
) -> list[TokenLogprob]:
    out: list[TokenLogprob] = []
    offset = 0
    for text in texts:
        probabilities = _distribution(rng, k + 1)
        rank = 0 if greedy else rng.choices(range(k + 1), weights=probabilities)[0]
        others = iter(
            [t for t in rng.sample(alternatives, min(k + 1, len(alternatives))) if t != text]
        )
        top: list[tuple[str, float]] = []
        for position in range(k):
            token = text if position == rank else next(others, f"<alt{position}>")
            top.append((token, math.log(probabilities[position])))
        out.append(TokenLogprob(text, math.log(probabilities[rank]), top, offset))
        offset += len(text)
    return out


def _bytes(token: str) -> list[int]:
    return list(token.encode())


def chat_entry(item: TokenLogprob) -> dict[str, Any]:
    return {
        "token": item.token,
        "logprob": item.logprob,
        "bytes": _bytes(item.token),
        "top_logprobs": [
            {"token": token, "logprob": logprob, "bytes": _bytes(token)}
            for token, logprob in item.top
        ],
    }


def chat_logprobs(items: Sequence[TokenLogprob]) -> dict[str, Any]:
    return {"content": [chat_entry(item) for item in items], "refusal": None}


def completion_logprobs(items: Sequence[TokenLogprob]) -> dict[str, Any]:
    top: list[dict[str, float]] = []
    for item in items:
        entry = dict(item.top)
        entry[item.token] = item.logprob
        top.append(entry)
    return {
        "tokens": [item.token for item in items],
        "token_logprobs": [item.logprob for item in items],
        "top_logprobs": top,
        "text_offset": [item.offset for item in items],
    }
