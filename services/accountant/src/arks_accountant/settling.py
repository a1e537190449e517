"""Settlement: one SETTLE script call applies a whole batch of priced usage events.

The caller states, per account the batch touches, the terms the script needs (current
period, limits, where its usage goes) and, per event, what to apply. The script returns,
per event, whether it was applied now or had been before (with the done-marker, which
says how it was charged then), and per account its new version, its exhaustion state
(and whether this call crossed it, which happens in exactly one call), and the full
account hash for the ledger.

Failure modes: `EpochMismatch` when Valkey does not hold the epoch the caller restored
(it lost its data, or another accountant restored it); redis-py's ConnectionError and
TimeoutError when Valkey is unreachable; ResponseError when the script fails on a key
of the wrong type (the caller then settles events one by one to find the culprit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

import orjson
import redis.asyncio as aioredis

from arks_accountant import keys, scripts
from arks_accountant.pricing import Charge, PriceList
from arks_common import events, ledger

_DAY = 24 * 3600


class EpochMismatch(Exception):
    """Valkey holds another epoch than the caller's (empty string: none, it must be restored)."""

    def __init__(self, current: str) -> None:
        super().__init__(f"valkey epoch is {current!r}")
        self.current = current


def period_ttl(period: str) -> int:
    """How long a period's used counters outlive their period (0: forever)."""
    if period.startswith("d"):
        return 4 * _DAY
    if period.startswith("m"):
        return 100 * _DAY
    return 0


def prune_before(reset_period: str, now: datetime) -> str:
    """Account-hash fields of periods older than this id are dropped at a rollover."""
    if reset_period == ledger.ResetPeriod.DAILY:
        return ledger.period_id(reset_period, now - timedelta(days=2))
    if reset_period == ledger.ResetPeriod.MONTHLY:
        start = ledger.period_start(reset_period, now)
        assert start is not None
        return ledger.period_id(reset_period, start - timedelta(days=40))
    return ""


def limits_of(spec: events.QuotaSpec) -> dict[str, int]:
    """Limit per kind (cost in nanos); kinds without a limit are absent."""
    out: dict[str, int] = {limit.type: limit.value for limit in spec.limits}
    if spec.budget_nanos is not None:
        out[ledger.QuotaKind.COST] = spec.budget_nanos
    return out


@dataclass(frozen=True)
class AccountTerms:
    """What the script needs to know about one account beside its events."""

    account: keys.Account
    spec: events.QuotaSpec | None
    now: datetime

    @property
    def current_period(self) -> str:
        return ledger.period_id(self.spec.reset_period, self.now) if self.spec else ""

    @property
    def currency(self) -> str:
        return self.spec.currency if self.spec else "USD"

    def request(self) -> dict[str, object]:
        """This account's part of a SETTLE request."""
        account, spec = self.account, self.spec
        ns, quota = account.namespace, account.quota
        limits = limits_of(spec) if spec else {}
        prices = PriceList.of(spec) if spec and quota else None
        return {
            "key": account.hash_key,
            "quota": bool(quota),
            "dprefix": account.done_prefix,
            "rprefix": account.reservation_prefix,
            "prefix": keys.counter_prefix(ns, quota) if quota else "",
            "idx": ledger.reservation_index_key(ns, quota) if quota else "",
            "evaluate": bool(spec and quota),
            "cur": self.current_period,
            "limits": [limits.get(kind, -1) for kind in keys.KINDS],
            "prune": prune_before(spec.reset_period, self.now) if spec else "",
            "qusage": keys.quota_usage_key(ns, quota) if quota else "",
            "nsusage": keys.namespace_usage_key(ns),
            "costf": keys.cost_field(self.currency),
            "tokidx": keys.tokens_index_key(ns),
            "epidx": keys.endpoints_index_key(ns),
            "qidx": keys.quotas_index_key(ns) if quota else "",
            "ns": ns,
            "qname": quota or "",
            "pkey": keys.prices_key(ns, quota, prices.version) if quota and prices else "",
            "pjson": prices.to_json().decode() if prices else "",
            "pttl": ledger.APPLIED_TTL_SECONDS,
        }


class PricedEvent(NamedTuple):
    """One usage event, the account and period it is charged to, and its price."""

    event: events.UsageRecorded
    account: keys.Account
    period: str
    charge: Charge
    marker: str
    """The done-marker value: how the event was charged, to re-bill it identically."""
    seq: int = 0
    """The message's ARKS_USAGE stream sequence (0: unknown)."""

    @classmethod
    def of(
        cls,
        event: events.UsageRecorded,
        account: keys.Account,
        period: str,
        charge: Charge,
        seq: int = 0,
    ) -> PricedEvent:
        return cls(
            event, account, period, charge, f"{period}|{charge.price_version}|{charge.nanos}", seq
        )

    def group(self) -> tuple[keys.Account, str, str, str]:
        """Events of one group add to the same counters: account, period, token, endpoint."""
        return (self.account, self.period, self.event.token_name, self.event.endpoint)

    def request(self, group_index: int) -> list[str | int]:
        """This event's part of a SETTLE request (see the script for the order)."""
        event = self.event
        return [
            group_index,
            event.id,
            self.marker,
            event.prompt_tokens,
            event.completion_tokens,
            event.cached_tokens,
            self.charge.nanos,
        ]


def _group_request(
    group: tuple[keys.Account, str, str, str], account_index: int
) -> list[str | int]:
    account, period, token, endpoint = group
    ns = account.namespace
    return [
        account_index,
        period if account.quota else "",
        period_ttl(period) if account.quota else 0,
        token,
        endpoint,
        keys.token_usage_key(ns, token),
        keys.endpoint_usage_key(ns, endpoint),
    ]


@dataclass(frozen=True)
class Marker:
    """A done-marker read back: the period, price version and nanos an event was charged."""

    period: str
    price_version: str
    nanos: int
    raw: str

    @classmethod
    def parse(cls, raw: str) -> Marker:
        period, _, rest = raw.partition("|")
        version, _, nanos = rest.rpartition("|")
        try:
            return cls(period, version, int(nanos), raw)
        except ValueError:
            return cls(period, version, 0, raw)


@dataclass(frozen=True)
class AccountOutcome:
    account: keys.Account
    version: int
    notice: bool
    exhausted: bool
    reason: str
    exhausted_kinds: list[str]
    used: dict[str, int]
    fields: dict[str, str]


@dataclass(frozen=True)
class SettleOutcome:
    previous: list[Marker | None]
    """Per event: None if applied by this call, else the marker of its earlier application."""
    accounts: list[AccountOutcome] = field(default_factory=list)


class Settler:
    """Runs SETTLE (and SWEEP) with EVALSHA, reloading the scripts after a Valkey restart."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._settle = redis.register_script(scripts.SETTLE)
        self._sweep = redis.register_script(scripts.SWEEP)

    async def settle(
        self,
        epoch: int,
        terms: Sequence[AccountTerms],
        priced: Sequence[PricedEvent],
        *,
        change_reason: str = "",
    ) -> SettleOutcome:
        index = {t.account: i for i, t in enumerate(terms, start=1)}
        groups: dict[tuple[keys.Account, str, str, str], int] = {}
        events: list[list[str | int]] = []
        for p in priced:
            group = p.group()
            number = groups.get(group)
            if number is None:
                number = groups[group] = len(groups) + 1
            events.append(p.request(number))
        request = {
            "epoch_key": keys.EPOCH_KEY,
            "epoch": str(epoch),
            "ttl": ledger.APPLIED_TTL_SECONDS,
            "reason": change_reason,
            "used_suffixes": keys.USED_SUFFIXES,
            "reserved_suffixes": keys.RESERVED_SUFFIXES,
            "namespaces_key": keys.NAMESPACES_KEY,
            "accounts": [t.request() for t in terms],
            "groups": [_group_request(g, index[g[0]]) for g in groups],
            "events": events,
        }
        raw = await self._settle(args=[orjson.dumps(request)])
        return _parse(raw, terms)

    async def sweep(self, namespace: str, quota: str, now: float, limit: int) -> int:
        resv_prefix = ledger.reservation_key(namespace, quota, "")
        argv: list[str | int | float] = [
            ledger.reservation_index_key(namespace, quota),
            resv_prefix,
            keys.counter_prefix(namespace, quota),
            int(now),
            limit,
            *keys.RESERVED_SUFFIXES,
        ]
        released = await self._sweep(args=argv)
        return int(released)


def _parse(raw: object, terms: Sequence[AccountTerms]) -> SettleOutcome:
    reply = orjson.loads(raw if isinstance(raw, bytes | str) else b"{}")
    if reply.get("status") == "EPOCH":
        raise EpochMismatch(str(reply.get("current", "")))
    results = reply.get("results") or []
    previous = [None if r == 1 else Marker.parse(str(r)) for r in results]
    accounts = []
    for t, item in zip(terms, reply.get("accounts") or [], strict=True):
        fields = item.get("fields") or {}
        accounts.append(
            AccountOutcome(
                account=t.account,
                version=int(item["ver"]),
                notice=bool(item["notice"]),
                exhausted=bool(item["exhausted"]),
                reason=str(item["reason"]),
                exhausted_kinds=[k for k in str(item["kinds"]).split(",") if k],
                used={k.value: int(u) for k, u in zip(keys.KINDS, item["used"], strict=True)},
                fields={str(k): str(v) for k, v in fields.items()},
            )
        )
    return SettleOutcome(previous, accounts)
