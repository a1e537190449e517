"""The one interface every routing strategy implements, and what it may look at.

A strategy is pure and synchronous: given the candidate backends (with this router's
in-flight counts and the engines' latest load snapshot) and a description of the
request (prefix block hashes, session id, a seeded random source, the prefix index),
it returns one score per candidate. `polarity` says whether higher or lower is
better. Strategies never mutate what they are given; the caller ranks by score, tries
the best candidate and falls back to the next one on failure.

Load arithmetic lives here so that least-load and the bounded-load guards of the
affinity strategies agree on what "loaded" means.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Protocol

from arks_common.events import ReplicaLoad

KV_CACHE_WEIGHT = 4.0
"""A full KV cache counts as four queued requests: new work there waits or preempts."""


class Polarity(StrEnum):
    HIGHER = "higher"
    LOWER = "lower"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A backend the request may go to."""

    name: str
    url: str
    weight: int
    in_flight: int = 0
    """Requests this router process has open on the backend right now."""
    load: ReplicaLoad | None = None
    """The engine's own report (fresh enough to trust), or None."""

    @property
    def load_score(self) -> float:
        """Pending work: the larger of our own view and the engine's, queue counted twice."""
        if self.load is None:
            return float(self.in_flight)
        engine = self.load.running + self.load.waiting
        return (
            max(float(self.in_flight), float(engine))
            + self.load.waiting
            + KV_CACHE_WEIGHT * self.load.kv_cache_usage
        )


@dataclass(frozen=True, slots=True)
class RoutingRequest:
    """What a strategy may know about the request being routed."""

    prefix_blocks: Sequence[bytes] = ()
    """Chained hashes of the prompt's leading blocks: block i identifies blocks 0..i."""
    session: str | None = None
    rng: random.Random = field(default_factory=random.Random)
    prefix_index: Mapping[bytes, str] = field(default_factory=dict)
    """Block hash -> URL of the backend that last served a prompt with that prefix."""
    bounded_load_factor: float = 1.25


class Strategy(Protocol):
    name: ClassVar[str]
    polarity: ClassVar[Polarity]

    def score(self, candidates: Sequence[Candidate], request: RoutingRequest) -> Sequence[float]:
        """One score per candidate, in order."""
        ...


def rendezvous(key: bytes, url: str) -> float:
    """Highest-random-weight hash in [0, 1): stable across processes and restarts."""
    digest = hashlib.blake2b(key + b"\x00" + url.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def overloaded(candidates: Sequence[Candidate], factor: float) -> list[bool]:
    """Bounded-load guard: a candidate is overloaded above factor x (mean load + 1).

    The +1 keeps an idle fleet from declaring the first busy backend overloaded.
    """
    loads = [c.load_score for c in candidates]
    ceiling = factor * (sum(loads) / len(loads) + 1.0) if loads else 0.0
    return [load > ceiling for load in loads]
