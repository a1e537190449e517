"""Least load: the backend with the least pending work per unit of weight.

Pending work is `Candidate.load_score`: this router's own in-flight count, corrected
upwards by the engine's reported running and waiting sequences and KV-cache use (the
snapshot sees other routers' traffic too). Dividing by the weight lets an operator
declare one backend twice as big as another. A tiny random jitter breaks ties so that
idle backends share the first requests instead of all going to the first listed.

Across applications the comparison is per group: the application with the least
pending work (summed over its replicas) per unit of weight gets the request, then its
least loaded replica. Equal weights thus give equal shares of the work to a 3-replica
and a 1-replica application, and weights 3:1 give 3:1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from arks_router.routing.base import Candidate, Group, Polarity, RoutingRequest

JITTER = 1e-6


class LeastLoad:
    name: ClassVar[str] = "leastLoad"
    polarity: ClassVar[Polarity] = Polarity.LOWER

    def score(self, candidates: Sequence[Candidate], request: RoutingRequest) -> Sequence[float]:
        scores: list[float] = []
        for candidate in candidates:
            jitter = request.rng.random() * JITTER
            if candidate.weight <= 0:
                scores.append(float("inf"))
            else:
                scores.append((candidate.load_score + 1.0) / candidate.weight + jitter)
        return scores

    def score_groups(self, groups: Sequence[Group], request: RoutingRequest) -> Sequence[float]:
        return [g.load_per_weight() + request.rng.random() * JITTER for g in groups]
