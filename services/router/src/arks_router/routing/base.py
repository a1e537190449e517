"""The one interface every routing strategy implements, and what it may look at.

A strategy is pure and synchronous: given the candidate backends (with this router's
in-flight counts and the engines' latest load snapshot) and a description of the
request (prefix block hashes, session id, a seeded random source, the prefix index),
it returns one score per candidate. `polarity` says whether higher or lower is
better. Strategies never mutate what they are given; the caller ranks by score, tries
the best candidate and falls back to the next one on failure.

Weights belong to groups, not to replicas: a group is an application (every ready
replica of it is one backend carrying the application's name and weight), or one
static backend on its own. Ranking is two-level (`selecting.Fleet.rank`): the strategy
orders the groups (`score_groups`, where the weights apply), then the candidates within
each group (`score`); so a 3-replica and a 1-replica application at equal weight share
the traffic 50/50, as upstream's per-Service HTTPRoute weights do. When every group is
a single backend, the two levels reduce to scoring the backends directly.

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
    group: str = ""
    """The application the backend is a replica of; '' for a backend of its own."""
    replica: str = ""
    """The replica's id (its pod or process name) when the route table names it; else ''."""

    @property
    def group_key(self) -> str:
        return self.group or self.url

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


@dataclass(frozen=True, slots=True)
class Group:
    """An application's usable replicas (or one backend of its own) and its weight."""

    key: str
    weight: int
    candidates: Sequence[Candidate]

    @property
    def load_score(self) -> float:
        """The group's pending work: the sum over its replicas."""
        return sum(c.load_score for c in self.candidates)

    def load_per_weight(self) -> float:
        """(pending work + 1) per unit of weight: what least-load compares across groups."""
        return (self.load_score + 1.0) / self.weight if self.weight > 0 else float("inf")


class Strategy(Protocol):
    name: ClassVar[str]
    polarity: ClassVar[Polarity]

    def score(self, candidates: Sequence[Candidate], request: RoutingRequest) -> Sequence[float]:
        """One score per candidate (the replicas of one group), in order."""
        ...

    def score_groups(self, groups: Sequence[Group], request: RoutingRequest) -> Sequence[float]:
        """One score per group, in order, same polarity: where the weights apply."""
        ...


def weighted_hash(key: bytes, group: Group) -> float:
    """Weighted rendezvous key in [0, 1): the group with the highest key wins with
    probability weight / sum(weights) over random keys, stable for a given key."""
    if group.weight <= 0:
        return -2.0
    return float(rendezvous(key, group.key) ** (1.0 / group.weight))


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
