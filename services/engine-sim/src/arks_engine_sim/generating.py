"""Deciding, when a request arrives, exactly what the simulated model will answer.

The answer is a function of a seed: the request's `seed` mixed with the prompt's
fingerprint; with temperature 0 and no seed, the prompt alone (greedy decoding is
deterministic); otherwise fresh randomness. A seeded answer of n tokens is a prefix of
the same request's answer with a larger limit, as with a real sampler.

The natural length (where the model would emit end-of-sequence) is drawn uniformly from
[output_len_min, output_len_max]; `max_tokens` caps it (`finish_reason` "length"), and
`ignore_eos` (a vLLM extension) always runs to `max_tokens`. Stop strings are applied to
the generated text as vLLM does: the answer ends at the first match, the stop string is
not included, `finish_reason` is "stop" and `stop_reason` names the string.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

import orjson

from arks_engine_sim.vocabulary import Vocabulary

FinishReason = Literal["stop", "length"]
_MASK64 = (1 << 64) - 1


@dataclass(slots=True)
class OutputPlan:
    tokens: list[int]
    finish_reason: FinishReason
    stop_reason: str | None
    # JSON-encoded text of each token, only when a stop string clipped the answer.
    clipped: list[bytes] | None
    clipped_text: str | None

    def piece_json(self, vocab: Vocabulary, index: int) -> bytes:
        if self.clipped is not None:
            return self.clipped[index]
        token = self.tokens[index]
        return vocab.first_json[token] if index == 0 else vocab.json[token]

    def text(self, vocab: Vocabulary, upto: int) -> str:
        if self.clipped_text is not None and upto >= len(self.tokens):
            return self.clipped_text
        tokens = self.tokens[:upto]
        if not tokens:
            return ""
        texts = vocab.texts
        return vocab.first_texts[tokens[0]] + "".join([texts[t] for t in tokens[1:]])


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
) -> OutputPlan:
    rng = random.Random(material)
    natural = rng.randint(*length_range)
    if ignore_eos or natural >= max_tokens:
        count = max_tokens
        reason: FinishReason = "length" if (ignore_eos or natural > max_tokens) else "stop"
    else:
        count, reason = natural, "stop"
    tokens = rng.choices(range(vocab.size), k=count)
    plan = OutputPlan(tokens, reason, None, None, None)
    if stop:
        _apply_stop(plan, vocab, stop)
    return plan


def _apply_stop(plan: OutputPlan, vocab: Vocabulary, stop: tuple[str, ...]) -> None:
    texts = [vocab.first_texts[plan.tokens[0]]] if plan.tokens else []
    texts.extend(vocab.texts[t] for t in plan.tokens[1:])
    full = "".join(texts)
    cut, matched = -1, None
    for candidate in stop:
        at = full.find(candidate)
        if at >= 0 and (cut < 0 or at < cut):
            cut, matched = at, candidate
    if matched is None:
        return
    stop_end = cut + len(matched)
    clipped: list[bytes] = []
    start = 0
    for text in texts:
        end = start + len(text)
        clipped.append(orjson.dumps(text[: max(0, min(end, cut) - start)]))
        start = end
        if end >= stop_end:
            break
    plan.tokens = plan.tokens[: len(clipped)]
    plan.clipped = clipped
    plan.clipped_text = full[:cut]
    plan.finish_reason = "stop"
    plan.stop_reason = matched
