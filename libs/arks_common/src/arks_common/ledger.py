"""The Redis/Valkey key layout and arithmetic that router and accountant share.

The router *reserves* quota at admission; the accountant *applies* actual usage and
releases the reservation exactly once per request id. Both must agree on key names,
on which reset period a request belongs to, and on how money is counted, so those
rules live here and nowhere else.

Keys of one quota share a Redis Cluster hash tag `{<ns>/<quota>}` so that one Lua
script can touch them atomically. Counters per quota and period:

    arks:quota:{ns/q}:<period>:used:<kind>       applied usage (accountant only)
    arks:quota:{ns/q}:<period>:reserved:<kind>   in-flight reservations (router +, accountant -)
    arks:quota:{ns/q}:resv:<request-id>          hash: what one request reserved (router)
    arks:quota:{ns/q}:resv-index                 zset: request ids scored by reservation expiry
    arks:quota:{ns/q}:resv-routers               set: ids of routers that reserved in this quota
    arks:done:{ns/q}:<request-id>                marker: usage of this request applied

Router leases (one key, outside any quota's slot):

    arks:routers                                 zset: router id -> lease expiry (unix ms,
                                                 Valkey's clock)

`<kind>` is prompt | response | total | cost (cost in nano units of the currency).

Lifetime usage, kept by the accountant for reporting (`arks usage`), in hashes with fields
`requests`, `prompt`, `cached`, `completion`, `total` and `cost_nanos:<currency>`:

    arks:usage:{ns}:token:<t> | :endpoint:<e> | :quota:<q> | :all
    arks:usage:{ns}:tokens | :endpoints | :quotas   sets: the names above, for listing
    arks:usage:namespaces                           set: namespaces with usage
Money is computed with exact `Decimal` arithmetic and charged in integer nano units
(1e-9 of the currency): counters are exact sums of what the billing records state.

The protocol, step by step:

1. Admission (router, one Lua script together with the rate limits): with
   `period = period_id(spec.reset_period, now)` and estimates prompt = prompt estimate,
   response = max_tokens (capped), total = their sum, cost = `to_nanos` of the
   estimated price, the request is admitted only if for every limited kind
   `used + reserved + estimate <= limit` (money: against `budget_nanos`). Then
   `reserved[kind] += estimate`, the hash `resv:<id>` gets fields `period`, `prompt`,
   `response`, `total`, `cost`, `expires` (unix seconds), `router` (the admitting
   router's id) and `at` (unix seconds, Valkey's clock), `resv-index` gets `<id>`
   scored by `expires`, and `resv-routers` gets the router's id. Nothing is written
   when any limit would be exceeded. A refusal says which case it is: `used +
   estimate > limit` (the used budget itself leaves no room: the quota is exhausted
   for this request) or only `used + reserved + estimate > limit` (requests in
   flight hold the room: retry later).
2. The router publishes UsageRecorded (id = request id, `quota`, `quota_period` =
   the period above) when the request ends, however it ends. If it dies first, the
   next owner of its usage spool slot publishes the request's last progress record
   from the router's journal instead (the tokens delivered so far); a final event
   always supersedes a progress record of the same id (see `arks_router.progress`).
3. Settlement (accountant, one Lua script per event): if `done:<id>` exists the
   event is a duplicate and nothing changes. Otherwise, if `resv:<id>` exists,
   `reserved[kind] -= resv[kind]` in the reservation's period and the hash and index
   entry are deleted; then `used[kind] += actual` in `quota_period` (cost: the priced
   amount in nanos); then `done:<id>` is set with `APPLIED_TTL_SECONDS`.
4. Expiry (accountant): reservations whose `expires` has passed (the router died
   before it could publish) are released the same way, without usage; a usage event
   that arrives later still applies its usage (step 3 finds no reservation).
5. Leases (router + accountant): every router process has an id and keeps
   `routers[id] = now + ROUTER_LEASE_SECONDS` (Valkey's clock, in ms) fresh while it
   runs, removing it when it stops. The accountant releases, as in step 4, every
   reservation whose router's lease is not live (lapsed or absent) once the
   reservation is at least `ROUTER_LEASE_SECONDS` old (a router registers within that
   long of starting), and drops the router from `resv-routers` when none of its
   reservations is left there. Whatever releases a reservation deletes its hash in
   the same script, so it is released once; a usage event of that request that
   arrives later (a router that was only partitioned, a journal replayed) still
   applies its usage once (step 3 finds no reservation).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Final

KEY_ROOT: Final = "arks:"
"""Every Redis/Valkey key Arks writes starts with this (the accountant's ACL pattern)."""
RATE_LIMIT_ROOT: Final = f"{KEY_ROOT}rl:"
"""The router's rate-limit windows (`arks_router.limits`) start with this."""

NANOS_PER_UNIT: Final = 1_000_000_000
TOKENS_PER_PRICE_UNIT: Final = Decimal(1_000_000)
"""Prices are per million tokens."""

LIFETIME: Final = "lifetime"

APPLIED_TTL_SECONDS: Final = 14 * 24 * 3600
"""How long an applied-usage marker lives: far beyond the stream's redelivery window."""
RESERVATION_GRACE_SECONDS: Final = 3600
"""Added to a request's own timeout before its reservation may be swept."""
ROUTER_LEASE_SECONDS: Final = 10
"""A router's lease outlives its last refresh by this long (step 5)."""
ROUTERS_KEY: Final = "arks:routers"
"""The lease of every router process: id -> expiry in unix ms (Valkey's clock)."""


class QuotaKind(StrEnum):
    PROMPT = "prompt"
    RESPONSE = "response"
    TOTAL = "total"
    COST = "cost"


class ResetPeriod(StrEnum):
    LIFETIME = "lifetime"
    DAILY = "daily"
    MONTHLY = "monthly"


def period_id(reset_period: str, at: datetime | None = None) -> str:
    """The period a moment belongs to: `lifetime`, `d2026-11-28` or `m2026-11` (UTC)."""
    when = (at or datetime.now(UTC)).astimezone(UTC)
    period = ResetPeriod(reset_period)
    if period is ResetPeriod.DAILY:
        return f"d{when:%Y-%m-%d}"
    if period is ResetPeriod.MONTHLY:
        return f"m{when:%Y-%m}"
    return LIFETIME


def period_start(reset_period: str, at: datetime | None = None) -> datetime | None:
    """Start of the period containing `at`; None for lifetime quotas."""
    when = (at or datetime.now(UTC)).astimezone(UTC)
    period = ResetPeriod(reset_period)
    if period is ResetPeriod.DAILY:
        return when.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is ResetPeriod.MONTHLY:
        return when.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return None


def quota_tag(namespace: str, quota: str) -> str:
    return f"{{{namespace}/{quota}}}"


def used_key(namespace: str, quota: str, period: str, kind: str) -> str:
    return f"arks:quota:{quota_tag(namespace, quota)}:{period}:used:{QuotaKind(kind)}"


def reserved_key(namespace: str, quota: str, period: str, kind: str) -> str:
    return f"arks:quota:{quota_tag(namespace, quota)}:{period}:reserved:{QuotaKind(kind)}"


def reservation_key(namespace: str, quota: str, request_id: str) -> str:
    return f"arks:quota:{quota_tag(namespace, quota)}:resv:{request_id}"


def reservation_index_key(namespace: str, quota: str) -> str:
    return f"arks:quota:{quota_tag(namespace, quota)}:resv-index"


def reservation_routers_key(namespace: str, quota: str) -> str:
    return f"arks:quota:{quota_tag(namespace, quota)}:resv-routers"


def applied_key(namespace: str, quota: str, request_id: str) -> str:
    return f"arks:done:{quota_tag(namespace, quota)}:{request_id}"


def to_nanos(amount: Decimal) -> int:
    """Charge an exact amount in whole nano units (banker's rounding, stated on records)."""
    return int((amount * NANOS_PER_UNIT).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def from_nanos(nanos: int) -> Decimal:
    return Decimal(nanos) / NANOS_PER_UNIT


def token_cost(tokens: int, price_per_million: Decimal) -> Decimal:
    """Exact cost of `tokens` at a price per million tokens."""
    return Decimal(tokens) * price_per_million / TOKENS_PER_PRICE_UNIT


USAGE_NAMESPACES_KEY: Final = "arks:usage:namespaces"
USAGE_COST_FIELD_PREFIX: Final = "cost_nanos:"
_USAGE_INDEX: Final = {"token": "tokens", "endpoint": "endpoints", "quota": "quotas"}


def usage_key(namespace: str, by: str, name: str | None = None) -> str:
    """Lifetime usage hash of a token, endpoint or quota (`by`), or of the namespace."""
    prefix = f"arks:usage:{{{namespace}}}:"
    if by == "namespace":
        return f"{prefix}all"
    if by not in _USAGE_INDEX or not name:
        raise ValueError(f"usage is kept by namespace, token, endpoint or quota, not {by!r}")
    return f"{prefix}{by}:{name}"


def usage_index_key(namespace: str, by: str) -> str:
    """The set listing a namespace's tokens, endpoints or quotas that have usage."""
    return f"arks:usage:{{{namespace}}}:{_USAGE_INDEX[by]}"
