"""`arks usage`: what tokens, endpoints, quotas and namespaces used, from Redis/Valkey.

The numbers are the accountant's, applied exactly once per request. Two key families:

- `arks_common.ledger` quota counters, `used:<kind>` per quota and period (what admission
  checks): `--by quota` shows the current period of each quota (from its ArksQuota's
  `resetPeriod`) next to its limits and money budget;
- the accountant's lifetime usage hashes (docs/accountant.md, `arks_accountant.keys`):
  `arks:usage:{<ns>}:token:<name>`, `...:endpoint:<name>`, `...:quota:<name>`,
  `...:all`, listed by the sets `arks:usage:{<ns>}:tokens|endpoints|quotas` and
  `arks:usage:namespaces`; fields `requests`, `prompt`, `cached`, `completion`, `total`
  and `cost_nanos:<CUR>`. They are the accountant's layout, read here (services and the
  CLI never import each other), so a rename there must be made here too; the CLI's tests
  run a real accountant to catch that.

On Kubernetes (`from_quota_status`) the CLI reads neither Valkey nor NATS: it shows what
the ArksQuota objects' status says, as the accountant last wrote it (`quotaStatus` used
per type, `budgetStatus.spent`, `periodStart`), with the age of that write (UPDATED)
instead of the request count, which only the accountant's counters know. `--by quota`
only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import redis.asyncio as aioredis
import redis.exceptions

from arks_cli.connecting import open_redis
from arks_cli.errors import CliError
from arks_cli.printing import age_of, parse_timestamp, render_table
from arks_common import ledger
from arks_common.errors import ArksError
from arks_common.messaging import Bus
from arks_common.resources import ArksQuota, ResourceError, parse_resource
from arks_common.settings import RedisSettings
from arks_common.store import ResourceStore

GROUPINGS: Final = ("namespace", "token", "endpoint", "quota")
NAMESPACES_KEY: Final = ledger.USAGE_NAMESPACES_KEY
COST_PREFIX: Final = ledger.USAGE_COST_FIELD_PREFIX
LIMITED_KINDS: Final = ("prompt", "response", "total")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


usage_key = ledger.usage_key
index_key = ledger.usage_index_key


@dataclass
class Usage:
    """Lifetime usage of one token, endpoint, quota or namespace."""

    requests: int = 0
    prompt: int = 0
    cached: int = 0
    completion: int = 0
    total: int = 0
    cost_nanos: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_hash(cls, raw: Mapping[bytes | str, bytes | str]) -> Usage:
        values = {_text(k): int(v) for k, v in raw.items()}
        return cls(
            requests=values.get("requests", 0),
            prompt=values.get("prompt", 0),
            cached=values.get("cached", 0),
            completion=values.get("completion", 0),
            total=values.get("total", 0),
            cost_nanos={
                k.removeprefix(COST_PREFIX): v
                for k, v in values.items()
                if k.startswith(COST_PREFIX)
            },
        )

    def cost(self) -> str:
        if not self.cost_nanos:
            return "0"
        return ", ".join(
            f"{format(ledger.from_nanos(n), 'f')} {currency}"
            for currency, n in sorted(self.cost_nanos.items())
        )


@dataclass
class QuotaPeriod:
    """The current period of a quota: used against limits, money against the budget."""

    period: str
    used: dict[str, int] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)
    spent_nanos: int = 0
    budget: Decimal | None = None
    currency: str = "USD"
    updated: str | None = None
    """When the accountant last wrote these numbers (ArksQuota status only)."""


@dataclass
class Row:
    namespace: str
    name: str
    usage: Usage
    quota: QuotaPeriod | None = None


@dataclass(frozen=True)
class Report:
    by: str
    rows: list[Row]
    from_status: bool = False
    """The rows are ArksQuota status (Kubernetes), not the accountant's counters."""


async def _namespaces(client: aioredis.Redis, namespace: str | None) -> list[str]:
    if namespace is not None:
        return [namespace]
    members = await client.smembers(NAMESPACES_KEY)
    return sorted(_text(m) for m in members)


async def _quotas(bus: Bus, namespace: str | None) -> dict[tuple[str, str], ArksQuota]:
    found: dict[tuple[str, str], ArksQuota] = {}
    try:
        objects = await ResourceStore(bus).list("ArksQuota", namespace)
    except ArksError:
        return found
    for obj in objects:
        try:
            quota = parse_resource(obj)
        except ResourceError:
            continue
        if isinstance(quota, ArksQuota):
            found[(quota.namespace, quota.name)] = quota
    return found


async def _period(client: aioredis.Redis, ns: str, name: str, quota: ArksQuota) -> QuotaPeriod:
    period = ledger.period_id(quota.spec.reset_period)
    kinds = [*LIMITED_KINDS, ledger.QuotaKind.COST.value]
    values = await client.mget([ledger.used_key(ns, name, period, k) for k in kinds])
    counts = {k: int(v) if v is not None else 0 for k, v in zip(kinds, values, strict=True)}
    result = QuotaPeriod(
        period=period,
        used={k: counts[k] for k in LIMITED_KINDS},
        limits={item.type: item.value for item in quota.spec.quotas},
        spent_nanos=counts[ledger.QuotaKind.COST.value],
    )
    if quota.spec.budget is not None:
        result.budget = quota.spec.budget.limit
        result.currency = quota.spec.budget.currency
    return result


async def _rows(client: aioredis.Redis, bus: Bus, namespace: str | None, by: str) -> list[Row]:
    rows: list[Row] = []
    quotas = await _quotas(bus, namespace) if by == "quota" else {}
    for ns in await _namespaces(client, namespace):
        if by == "namespace":
            raw = await client.hgetall(usage_key(ns, "namespace"))
            if raw:
                rows.append(Row(ns, ns, Usage.from_hash(raw)))
            continue
        names = {_text(m) for m in await client.smembers(index_key(ns, by))}
        names |= {name for (q_ns, name) in quotas if q_ns == ns}
        for name in sorted(names):
            usage = Usage.from_hash(await client.hgetall(usage_key(ns, by, name)))
            quota = quotas.get((ns, name))
            period = await _period(client, ns, name, quota) if quota is not None else None
            rows.append(Row(ns, name, usage, period))
    if by == "quota" and namespace is None:
        # Quotas that exist but never saw a request, in namespaces without usage yet.
        seen = {(r.namespace, r.name) for r in rows}
        for (ns, name), quota in sorted(quotas.items()):
            if (ns, name) not in seen:
                rows.append(Row(ns, name, Usage(), await _period(client, ns, name, quota)))
    return rows


async def collect(
    redis_settings: RedisSettings, bus: Bus, *, namespace: str | None, by: str
) -> Report:
    """Usage grouped `by` namespace, token, endpoint or quota (all namespaces if None)."""
    if by not in GROUPINGS:
        raise CliError(f"--by must be one of {', '.join(GROUPINGS)}")
    async with open_redis(redis_settings) as client:
        try:
            rows = await _rows(client, bus, namespace, by)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            raise  # open_redis says the server stopped answering
        except redis.exceptions.RedisError as exc:
            raise CliError(f"reading usage from {redis_settings.url} failed: {exc}") from exc
    return Report(by, rows)


def _status_period(quota: ArksQuota, status: dict[str, Any]) -> str:
    """The period the status counts: from its `periodStart`, else the current one."""
    start = status.get("periodStart")
    at = parse_timestamp(start) if isinstance(start, str) else None
    return ledger.period_id(quota.spec.reset_period, at)


def _latest(stamps: list[Any]) -> str | None:
    parsed = [parse_timestamp(s) for s in stamps if isinstance(s, str)]
    found = [p for p in parsed if p is not None]
    return max(found).isoformat() if found else None


def _spent_nanos(value: Any) -> int:
    try:
        return ledger.to_nanos(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return 0


def from_quota_status(objects: list[dict[str, Any]], *, by: str) -> Report:
    """What the ArksQuota objects' status says (the Kubernetes platform)."""
    if by != "quota":
        raise CliError(
            f"--by {by} needs the accountant's counters, which only the local platform "
            "reads; on Kubernetes `arks usage` shows ArksQuota status (--by quota)"
        )
    rows: list[Row] = []
    for obj in objects:
        try:
            quota = parse_resource(obj)
        except ResourceError:
            continue
        if not isinstance(quota, ArksQuota):
            continue
        status = obj.get("status") or {}
        entries = [e for e in status.get("quotaStatus") or [] if isinstance(e, dict)]
        budget = status.get("budgetStatus") or {}
        period = QuotaPeriod(
            period=_status_period(quota, status),
            used={str(e.get("type")): int(e.get("used") or 0) for e in entries},
            limits={item.type: item.value for item in quota.spec.quotas},
            spent_nanos=_spent_nanos(budget.get("spent", 0)),
            updated=_latest(
                [e.get("lastUpdateTime") for e in entries] + [budget.get("lastUpdateTime")]
            ),
        )
        if quota.spec.budget is not None:
            period.budget = quota.spec.budget.limit
            period.currency = quota.spec.budget.currency
        elif isinstance(budget.get("currency"), str):
            period.currency = budget["currency"]
        rows.append(Row(quota.namespace, quota.name, Usage(), period))
    return Report("quota", rows, from_status=True)


def _against(used: int, limit: int | None) -> str:
    if limit is None:
        return str(used)
    percent = 100.0 * used / limit if limit else 100.0
    return f"{used}/{limit} ({percent:.0f}%)"


def _spent(period: QuotaPeriod) -> str:
    spent = format(ledger.from_nanos(period.spent_nanos), "f")
    if period.budget is None:
        return spent
    return f"{spent}/{format(period.budget, 'f')} {period.currency}"


def render(report: Report, now: datetime | None = None) -> str:
    if not report.rows:
        return "No usage recorded.\n"
    if report.from_status:
        return _render_status(report, now)
    lifetime = ["REQUESTS", "PROMPT", "CACHED", "COMPLETION", "TOTAL", "COST"]
    if report.by == "namespace":
        headers = ["NAMESPACE", *lifetime]
    elif report.by == "quota":
        headers = [
            "NAMESPACE",
            "QUOTA",
            "PERIOD",
            "PROMPT",
            "RESPONSE",
            "TOTAL",
            "SPENT",
            "REQUESTS",
        ]
    else:
        headers = ["NAMESPACE", report.by.upper(), *lifetime]
    table: list[list[str]] = []
    for row in report.rows:
        u = row.usage
        counts = [str(u.requests), str(u.prompt), str(u.cached), str(u.completion), str(u.total)]
        if report.by == "namespace":
            table.append([row.namespace, *counts, u.cost()])
        elif report.by == "quota":
            q = row.quota
            if q is None:  # usage of a quota that no longer exists: lifetime numbers only
                table.append(
                    [
                        row.namespace,
                        row.name,
                        "-",
                        str(u.prompt),
                        str(u.completion),
                        str(u.total),
                        u.cost(),
                        str(u.requests),
                    ]
                )
            else:
                table.append(
                    [
                        row.namespace,
                        row.name,
                        q.period,
                        *(_against(q.used.get(k, 0), q.limits.get(k)) for k in LIMITED_KINDS),
                        _spent(q),
                        str(u.requests),
                    ]
                )
        else:
            table.append([row.namespace, row.name, *counts, u.cost()])
    return render_table(headers, table) + "\n"


def _render_status(report: Report, now: datetime | None) -> str:
    headers = ["NAMESPACE", "QUOTA", "PERIOD", "PROMPT", "RESPONSE", "TOTAL", "SPENT", "UPDATED"]
    table = []
    for row in report.rows:
        q = row.quota
        assert q is not None  # every status row has its period
        table.append(
            [
                row.namespace,
                row.name,
                q.period,
                *(_against(q.used.get(k, 0), q.limits.get(k)) for k in LIMITED_KINDS),
                _spent(q),
                age_of(q.updated, now) if q.updated else "<never>",
            ]
        )
    return render_table(headers, table) + "\n"
