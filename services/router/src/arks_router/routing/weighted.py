"""Weighted random (upstream parity): traffic splits in proportion to the weights.

The weights are those of the groups (applications): a group is drawn by weight, then a
replica within it uniformly (its replicas share the application's weight), so the
split is per application whatever the replica counts.

Scores are Efraimidis-Spirakis keys `u ** (1 / w)`: ranking by them draws a weighted
random permutation, so the best candidate is picked with probability w / sum(w) and
the retry candidate is a weighted draw among the rest. Weight 0 gets no traffic as
long as any positive weight exists (then it ranks last, which only matters when every
positive backend failed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from arks_router.routing.base import Candidate, Group, Polarity, RoutingRequest


class Weighted:
    name: ClassVar[str] = "weighted"
    polarity: ClassVar[Polarity] = Polarity.HIGHER

    def score(self, candidates: Sequence[Candidate], request: RoutingRequest) -> Sequence[float]:
        scores: list[float] = []
        for candidate in candidates:
            draw = request.rng.random()
            if candidate.weight <= 0:
                scores.append(draw - 2.0)  # below every positive key, still randomised
            else:
                scores.append(draw ** (1.0 / candidate.weight))
        return scores

    def score_groups(self, groups: Sequence[Group], request: RoutingRequest) -> Sequence[float]:
        scores: list[float] = []
        for group in groups:
            draw = request.rng.random()
            scores.append(draw - 2.0 if group.weight <= 0 else draw ** (1.0 / group.weight))
        return scores
