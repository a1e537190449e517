"""Session affinity: every request of a session goes to the same backend.

The session id comes from a request header (the route table's `session_header`,
`x-session-id` by default). Backends are ranked by rendezvous hash of (session, URL):
every router replica agrees without sharing state, and when a backend leaves (ejected,
removed) only its own sessions move, to their second choice. Stickiness is the
contract here, so no load guard applies. Requests without a session id are spread by
least load.

Across applications the session picks its application by weighted rendezvous hash (an
application gets a weight-proportional share of the sessions, and a session stays in
its application), then its replica by rendezvous within it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from arks_router.routing.base import (
    Candidate,
    Group,
    Polarity,
    RoutingRequest,
    rendezvous,
    weighted_hash,
)


class SessionAffinity:
    name: ClassVar[str] = "sessionAffinity"
    polarity: ClassVar[Polarity] = Polarity.HIGHER

    def score(self, candidates: Sequence[Candidate], request: RoutingRequest) -> Sequence[float]:
        scores: list[float] = []
        key = request.session.encode() if request.session else None
        for candidate in candidates:
            if candidate.weight <= 0:
                scores.append(-2.0 - candidate.load_score)
            elif key is None:
                scores.append(1.0 / (1.0 + candidate.load_score) + request.rng.random() * 1e-6)
            else:
                scores.append(rendezvous(key, candidate.url))
        return scores

    def score_groups(self, groups: Sequence[Group], request: RoutingRequest) -> Sequence[float]:
        if not request.session:
            return [1.0 / g.load_per_weight() + request.rng.random() * 1e-6 for g in groups]
        key = request.session.encode()
        return [weighted_hash(key, g) for g in groups]
