"""`arks usage`: token (and money) usage from the accountant's counters in Redis/Valkey.

Quota counters follow `arks_common.ledger`: `used:<kind>` per quota and period, applied
exactly once per request by the accountant (`reserved:<kind>` holds in-flight
reservations). The report shows the current period of each quota (from its ArksQuota
`resetPeriod`; every period found when the ArksQuota is gone), with its limits.
`--by namespace` sums the quotas of each namespace.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
import redis.exceptions

from arks_cli.connecting import open_redis
from arks_cli.errors import CliError
from arks_cli.printing import render_table
from arks_common import ledger
from arks_common.errors import ArksError
from arks_common.messaging import Bus
from arks_common.resources import ArksQuota, ResourceError, parse_resource
from arks_common.store import ResourceStore

KINDS = (ledger.QuotaKind.PROMPT, ledger.QuotaKind.RESPONSE, ledger.QuotaKind.TOTAL)
_USED_KEY = re.compile(
    r"^arks:quota:\{(?P<namespace>[^/}]+)/(?P<quota>[^}]+)\}:(?P<period>[^:]+):used:(?P<kind>\w+)$"
)


@dataclass
class Row:
    """Usage of one group (a quota and period, a namespace, ...)."""

    namespace: str
    name: str
    period: str
    used: dict[str, int] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)
    spent_nanos: int = 0
    budget: str | None = None
    currency: str = "USD"


@dataclass(frozen=True)
class Report:
    by: str
    rows: list[Row]


async def _scan_used(
    client: aioredis.Redis, namespace: str | None
) -> dict[tuple[str, str, str], dict[str, int]]:
    pattern = ledger.used_key(namespace or "*", "*", "*", ledger.QuotaKind.TOTAL)
    pattern = pattern.removesuffix(ledger.QuotaKind.TOTAL.value) + "*"
    counters: dict[tuple[str, str, str], dict[str, int]] = defaultdict(dict)
    keys = [key async for key in client.scan_iter(match=pattern, count=500)]
    if not keys:
        return {}
    values = await client.mget(keys)
    for raw_key, value in zip(keys, values, strict=True):
        key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
        match = _USED_KEY.match(key)
        if match is None or value is None:
            continue
        group = (match["namespace"], match["quota"], match["period"])
        counters[group][match["kind"]] = int(value)
    return counters


async def _quotas(bus: Bus, namespace: str | None) -> dict[tuple[str, str], ArksQuota]:
    store = ResourceStore(bus)
    found: dict[tuple[str, str], ArksQuota] = {}
    try:
        objects = await store.list("ArksQuota", namespace)
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


def _quota_rows(
    counters: dict[tuple[str, str, str], dict[str, int]],
    quotas: dict[tuple[str, str], ArksQuota],
) -> list[Row]:
    rows: list[Row] = []
    current = {key: ledger.period_id(q.spec.reset_period) for key, q in quotas.items()}
    seen: set[tuple[str, str]] = set()
    for (namespace, name, period), used in sorted(counters.items()):
        quota = quotas.get((namespace, name))
        if quota is not None and period != current[(namespace, name)]:
            continue  # an earlier period of a resetting quota
        seen.add((namespace, name))
        rows.append(_row(namespace, name, period, used, quota))
    for (namespace, name), quota in sorted(quotas.items()):
        if (namespace, name) not in seen:
            rows.append(_row(namespace, name, current[(namespace, name)], {}, quota))
    return rows


def _row(
    namespace: str, name: str, period: str, used: dict[str, int], quota: ArksQuota | None
) -> Row:
    row = Row(namespace, name, period, used={k: used.get(k, 0) for k in KINDS})
    row.spent_nanos = used.get(ledger.QuotaKind.COST, 0)
    if quota is not None:
        row.limits = {item.type: item.value for item in quota.spec.quotas}
        if quota.spec.budget is not None:
            row.budget = format(quota.spec.budget.limit, "f")
            row.currency = quota.spec.budget.currency
    return row


def _by_namespace(rows: Iterable[Row]) -> list[Row]:
    totals: dict[str, Row] = {}
    for row in rows:
        total = totals.setdefault(row.namespace, Row(row.namespace, "", ""))
        for kind, value in row.used.items():
            total.used[kind] = total.used.get(kind, 0) + value
        total.spent_nanos += row.spent_nanos
    return [totals[ns] for ns in sorted(totals)]


async def collect(redis_url: str, bus: Bus, *, namespace: str | None, by: str) -> Report:
    if by in ("token", "endpoint"):
        raise CliError(
            f"usage by {by} needs per-{by} counters from the accountant, which this stack "
            "does not keep yet; use --by quota or --by namespace"
        )
    async with open_redis(redis_url) as client:
        try:
            counters = await _scan_used(client, namespace)
        except redis.exceptions.RedisError as exc:
            raise CliError(f"reading usage from {redis_url} failed: {exc}") from exc
    rows = _quota_rows(counters, await _quotas(bus, namespace))
    if by == "namespace":
        rows = _by_namespace(rows)
    return Report(by, rows)


def _limit(used: int, limit: int | None) -> str:
    if limit is None:
        return str(used)
    percent = 100.0 * used / limit if limit else 100.0
    return f"{used}/{limit} ({percent:.0f}%)"


def render(report: Report) -> str:
    if not report.rows:
        return "No usage recorded.\n"
    if report.by == "namespace":
        headers = ["NAMESPACE", "PROMPT", "RESPONSE", "TOTAL", "SPENT"]
        rows = [
            [
                r.namespace,
                str(r.used.get("prompt", 0)),
                str(r.used.get("response", 0)),
                str(r.used.get("total", 0)),
                format(ledger.from_nanos(r.spent_nanos), "f"),
            ]
            for r in report.rows
        ]
    else:
        headers = ["NAMESPACE", "QUOTA", "PERIOD", "PROMPT", "RESPONSE", "TOTAL", "SPENT"]
        rows = []
        for r in report.rows:
            spent = format(ledger.from_nanos(r.spent_nanos), "f")
            if r.budget is not None:
                spent = f"{spent}/{r.budget} {r.currency}"
            rows.append(
                [
                    r.namespace,
                    r.name,
                    r.period,
                    *(
                        _limit(r.used.get(k, 0), r.limits.get(k))
                        for k in ("prompt", "response", "total")
                    ),
                    spent,
                ]
            )
    return render_table(headers, rows) + "\n"
