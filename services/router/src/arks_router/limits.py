"""Rate-limit rules of a grant and the Redis/Valkey key layout of their windows.

Each rule (rpm, rpd, tpm, tpd) of a (namespace, token, endpoint) grant has one
sliding window, stored as one hash:

    arks:rl:{<tag>}:<namespace>/<token-name>/<endpoint>:<rule>
        <bucket index>  -> requests or tokens charged in that sub-window
        t               -> running total of the live buckets
        h               -> index of the oldest bucket that may still be live

The window (60 s or 86,400 s) is cut into `minute_buckets` / `day_buckets`
sub-windows; a bucket's index is `floor(now_ms / bucket_ms)` by the Redis server's
clock (so every router replica agrees), and a bucket leaves the window when `buckets`
newer ones exist. The window therefore slides in steps of one bucket (1 s and 5 min
by default), and the limit holds exactly over every window so aligned. A key expires
a window after its last write.

`{<tag>}` is a Redis Cluster hash tag, so one Lua script can touch every key of a
request atomically: the tag is the quota's own (`<namespace>/<quota>`, see
`arks_common.ledger`) when the grant has a quota, so the rate limits and the quota
reservation live in one slot; otherwise `<namespace>/<token-name>/<endpoint>`.
Kubernetes names contain no "/", so the two tag forms never collide. (A grant whose
quota reference changes starts fresh windows: the keys move to another slot.)

Identity is the token's *name*, never its secret, as upstream does. Duplicate rules of
one type collapse to the strictest value (upstream double-counted them).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from arks_common import ledger
from arks_common.events import EndpointGrant
from arks_common.ledger import quota_tag
from arks_router.settings import GovernanceSettings

MINUTE_MS = 60_000
DAY_MS = 86_400_000


class Unit(StrEnum):
    REQUESTS = "requests"
    TOKENS = "tokens"


@dataclass(frozen=True, slots=True)
class Rule:
    type: str
    """rpm | rpd | tpm | tpd"""
    unit: Unit
    limit: int
    window_ms: int
    buckets: int

    @property
    def bucket_ms(self) -> int:
        return self.window_ms // self.buckets


_ORDER = ("rpm", "rpd", "tpm", "tpd")


def rules_for(grant: EndpointGrant, settings: GovernanceSettings) -> list[Rule]:
    strictest: dict[str, int] = {}
    for limit in grant.rate_limits:
        current = strictest.get(limit.type)
        strictest[limit.type] = limit.value if current is None else min(current, limit.value)
    rules: list[Rule] = []
    for type_ in _ORDER:
        if type_ not in strictest:
            continue
        minute = type_.endswith("m")
        rules.append(
            Rule(
                type=type_,
                unit=Unit.REQUESTS if type_.startswith("r") else Unit.TOKENS,
                limit=strictest[type_],
                window_ms=MINUTE_MS if minute else DAY_MS,
                buckets=settings.minute_buckets if minute else settings.day_buckets,
            )
        )
    return rules


def slot_tag(namespace: str, token_name: str, endpoint: str, quota: str | None) -> str:
    """The hash tag (with braces) all keys of this grant share."""
    if quota:
        return quota_tag(namespace, quota)
    return f"{{{namespace}/{token_name}/{endpoint}}}"


def window_key(tag: str, namespace: str, token_name: str, endpoint: str, rule: str) -> str:
    return f"{ledger.RATE_LIMIT_ROOT}{tag}:{namespace}/{token_name}/{endpoint}:{rule}"
