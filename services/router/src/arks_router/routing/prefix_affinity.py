"""Prefix affinity with a bounded-load guard: same prompt prefix, same engine.

Engines with prefix caching skip the prefill of a prefix they have seen, so requests
sharing a long prefix (system prompt, few-shot examples, a conversation's history)
should land where that prefix is cached. The prompt is cut into fixed-size character
blocks whose hashes are chained (block i's hash covers blocks 0..i); the router
remembers which backend last served each block hash (`RoutingRequest.prefix_index`).

Score of a backend = 1 + the number of leading blocks it is known to hold, plus a
fraction that prefers the less loaded one on ties. A prefix nobody has seen yet goes
to the rendezvous-hash winner of its first block, which every router computes alike,
so replicas of the router agree before they have learned anything.

Bounded load: a backend above factor x (mean load + 1) is ranked after every other
backend, least loaded first, so a hot prefix spills over instead of melting one engine.
A spill does not move the prompt group's home (`Fleet.remember_prefix` keeps a block's
home while it is a live backend), so the next request of the group goes home again.
Without prompt text the strategy degrades to least load.

Across applications: a prefix some replica holds (and that replica is not overloaded)
stays in that replica's application — cache reuse is the point; an unseen prefix picks
its application by weighted rendezvous hash of its first block, so each application
gets a weight-proportional share of the prefix families; an application whose every
replica is overloaded ranks last. Within the application the rules above apply.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import ClassVar

from arks_router.routing.base import (
    Candidate,
    Group,
    Polarity,
    RoutingRequest,
    overloaded,
    rendezvous,
    weighted_hash,
)


class PrefixAffinity:
    name: ClassVar[str] = "prefixAffinity"
    polarity: ClassVar[Polarity] = Polarity.HIGHER

    def score(self, candidates: Sequence[Candidate], request: RoutingRequest) -> Sequence[float]:
        hot = overloaded(candidates, request.bounded_load_factor)
        held = _held_blocks(candidates, request)
        first = request.prefix_blocks[0] if request.prefix_blocks else None
        scores: list[float] = []
        for index, candidate in enumerate(candidates):
            load = candidate.load_score
            if candidate.weight <= 0:
                scores.append(-3.0 - load)
            elif hot[index]:
                scores.append(-1.0 - load / (load + 1.0))
            elif first is None:
                scores.append(1.0 / (1.0 + load))
            elif held[index]:
                scores.append(2.0 + held[index] + 0.5 / (1.0 + load))
            else:
                scores.append(rendezvous(first, candidate.url))
        return scores

    def score_groups(self, groups: Sequence[Group], request: RoutingRequest) -> Sequence[float]:
        every = [c for g in groups for c in g.candidates]
        hot = dict(
            zip((id(c) for c in every), overloaded(every, request.bounded_load_factor), strict=True)
        )
        held = dict(zip((id(c) for c in every), _held_blocks(every, request), strict=True))
        first = request.prefix_blocks[0] if request.prefix_blocks else None
        scores: list[float] = []
        for group in groups:
            cool = [c for c in group.candidates if not hot[id(c)]]
            if group.weight <= 0:
                scores.append(-3.0 - group.load_score)
            elif not cool:
                load = min(c.load_score for c in group.candidates)
                scores.append(-1.0 - load / (load + 1.0))
            elif first is None:
                scores.append(1.0 / group.load_per_weight())
            elif any(held[id(c)] for c in cool):
                best = max(cool, key=lambda c: held[id(c)])
                scores.append(2.0 + held[id(best)] + 0.5 / (1.0 + best.load_score))
            else:
                scores.append(weighted_hash(first, group))
        return scores


def _held_blocks(candidates: Sequence[Candidate], request: RoutingRequest) -> list[int]:
    """For each candidate, how many leading blocks it served last (longest prefix)."""
    longest: dict[str, int] = {}
    for position, block in enumerate(request.prefix_blocks):
        owner = request.prefix_index.get(block)
        if owner is not None:
            longest[owner] = position + 1
    return [longest.get(candidate.url, 0) for candidate in candidates]


def prefix_blocks(text: str, block_chars: int, max_blocks: int) -> list[bytes]:
    """Chained hashes of the leading full blocks of `text` (a partial tail is ignored:
    the engine caches whole KV blocks, and a tail would make every prompt unique)."""
    data = text[: block_chars * max_blocks]
    blocks: list[bytes] = []
    previous = b""
    for start in range(0, len(data) - block_chars + 1, block_chars):
        chunk = data[start : start + block_chars].encode()
        previous = hashlib.blake2b(previous + chunk, digest_size=16).digest()
        blocks.append(previous)
    return blocks
