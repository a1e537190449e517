"""Deciding, when a request arrives, exactly what the simulated model will answer.

The answer is a function of a seed: the request's `seed` mixed with the prompt's
fingerprint; with temperature 0 and no seed, the prompt alone (greedy decoding is
deterministic); otherwise fresh randomness. A seeded answer of n tokens is a prefix of
the same request's answer with a larger limit, as with a real sampler.

Free text: the natural length (where the model would emit end-of-sequence) is drawn
uniformly from [output_len_min, output_len_max]; `max_tokens` caps it (`finish_reason`
"length"), and `ignore_eos` (a vLLM extension) always runs to `max_tokens`. A
structured answer (tool calls, JSON; see structuring.py) is a fixed list of token
pieces that ends where its JSON ends, unless `max_tokens` cuts it first. Stop strings
are applied to the generated text as vLLM does: the answer ends at the first match, the
stop string is not included, `finish_reason` is "stop" and `stop_reason` names it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

import orjson

from arks_engine_sim.logprobs import TokenLogprob
from arks_engine_sim.structuring import PlannedCall, Structure
from arks_engine_sim.vocabulary import Vocabulary

FinishReason = Literal["stop", "length", "tool_calls"]
_MASK64 = (1 << 64) - 1


@dataclass(slots=True)
class OutputPlan:
    tokens: list[int]  # vocabulary entries (free text; ignored when `pieces` is set)
    finish_reason: FinishReason  # as the API reports it
    stop_reason: str | None
    # Explicit token texts (structured answers, or text clipped by a stop string), and
    # each one JSON-encoded for the streaming path.
    pieces: list[str] | None = None
    pieces_json: list[bytes] | None = None
    calls: list[PlannedCall] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None

    @property
    def count(self) -> int:
        return len(self.pieces) if self.pieces is not None else len(self.tokens)

    @property
    def engine_reason(self) -> str:
        """What the engine (and its metrics) call the end: a tool call is a "stop"."""
        return "length" if self.finish_reason == "length" else "stop"

    def piece_json(self, vocab: Vocabulary, index: int) -> bytes:
        if self.pieces_json is not None:
            return self.pieces_json[index]
        token = self.tokens[index]
        return vocab.first_json[token] if index == 0 else vocab.json[token]

    def piece_texts(self, vocab: Vocabulary) -> list[str]:
        if self.pieces is not None:
            return self.pieces
        texts = vocab.texts
        return [vocab.first_texts[t] if i == 0 else texts[t] for i, t in enumerate(self.tokens)]

    def text(self, vocab: Vocabulary, upto: int, start: int = 0) -> str:
        if self.pieces is not None:
            return "".join(self.pieces[start:upto])
        tokens = self.tokens[start:upto]
        if not tokens:
            return ""
        texts = vocab.texts
        head = vocab.first_texts[tokens[0]] if start == 0 else texts[tokens[0]]
        return head + "".join([texts[t] for t in tokens[1:]])


def seed_material(
    seed: int | None, temperature: float, fingerprint: int, rng: random.Random
) -> int:
    if seed is not None:
        return ((seed & _MASK64) << 64) | fingerprint
    if temperature == 0.0:
        return fingerprint
    return rng.getrandbits(64)


def plan_output(
    vocab: Vocabulary,
    *,
    material: int,
    max_tokens: int,
    ignore_eos: bool,
    stop: tuple[str, ...],
    length_range: tuple[int, int],
    structure: Structure | None = None,
) -> OutputPlan:
    if structure is not None:
        pieces = structure.pieces[:max_tokens]
        cut = len(pieces) < len(structure.pieces)
        calls = [c for c in structure.calls if c.start < len(pieces)]
        reason: FinishReason = "length" if cut else structure.finish_reason
        plan = OutputPlan([], reason, None, pieces, [orjson.dumps(p) for p in pieces], calls)
    else:
        rng = random.Random(material)
        natural = rng.randint(*length_range)
        if ignore_eos or natural >= max_tokens:
            count = max_tokens
            reason = "length" if (ignore_eos or natural > max_tokens) else "stop"
        else:
            count, reason = natural, "stop"
        plan = OutputPlan(rng.choices(range(vocab.size), k=count), reason, None)
    if stop:
        _apply_stop(plan, plan.piece_texts(vocab), stop)
    return plan


def _apply_stop(plan: OutputPlan, texts: list[str], stop: tuple[str, ...]) -> None:
    full = "".join(texts)
    cut, matched = -1, None
    for candidate in stop:
        at = full.find(candidate)
        if at >= 0 and (cut < 0 or at < cut):
            cut, matched = at, candidate
    if matched is None:
        return
    stop_end = cut + len(matched)
    clipped: list[str] = []
    start = 0
    for text in texts:
        end = start + len(text)
        clipped.append(text[: max(0, min(end, cut) - start)])
        start = end
        if end >= stop_end:
            break
    plan.tokens = plan.tokens[: len(clipped)]
    plan.pieces = clipped
    plan.pieces_json = [orjson.dumps(p) for p in clipped]
    plan.calls = [c for c in plan.calls if c.start < len(clipped)]
    plan.finish_reason = "stop"
    plan.stop_reason = matched
