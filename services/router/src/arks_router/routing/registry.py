"""Strategy names and how a route table's choice is resolved.

Names are those of the ArksEndpoint `strategy` extension (camelCase); snake_case
spellings are accepted too. `auto` is the default: weighted when the backends'
weights differ (the operator asked for a split, e.g. blue/green), least load otherwise.
An unknown name in a route table falls back to the router's default, so a newer
reconciler cannot break an older router.
"""

from __future__ import annotations

from collections.abc import Sequence

from arks_router.routing.base import Strategy
from arks_router.routing.least_load import LeastLoad
from arks_router.routing.prefix_affinity import PrefixAffinity
from arks_router.routing.session_affinity import SessionAffinity
from arks_router.routing.weighted import Weighted

AUTO = "auto"

_STRATEGIES: dict[str, Strategy] = {
    strategy.name: strategy
    for strategy in (Weighted(), LeastLoad(), PrefixAffinity(), SessionAffinity())
}
_ALIASES = {
    "least_load": LeastLoad.name,
    "prefix_affinity": PrefixAffinity.name,
    "session_affinity": SessionAffinity.name,
}


def names() -> set[str]:
    return {AUTO, *_STRATEGIES, *_ALIASES}


def canonical(name: str) -> str | None:
    """The registered name for `name`, or None when it is unknown."""
    if name == AUTO or name in _STRATEGIES:
        return name
    return _ALIASES.get(name)


def resolve(requested: str | None, default: str, weights: Sequence[int]) -> Strategy:
    """The strategy for a route table: its own choice, else the router's default."""
    name = canonical(requested) if requested else None
    if name is None:
        name = canonical(default) or AUTO
    if name == AUTO:
        positive = {w for w in weights if w > 0}
        name = Weighted.name if len(positive) > 1 else LeastLoad.name
    return _STRATEGIES[name]
