"""Exact prices of usage events, and the billing records that state them.

Cached prompt tokens are priced at the endpoint's `cached_prompt` price, the rest of the
prompt at `prompt`, completion tokens at `completion` (all per million tokens). Every
amount is an exact `Decimal`; the total is charged to the quota's money counter in
whole nano units (`ledger.to_nanos`, banker's rounding), and `charged_nanos` on the
record is exactly what was counted. An endpoint the quota has no price for, or a
request without a quota, costs nothing (amounts 0); the record still names the quota's
price version so a billing system can tell "free" from "unpriced".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property

import orjson
from pydantic import BaseModel, ConfigDict

from arks_common import events, ledger

_ZERO = Decimal(0)


class PriceList(BaseModel):
    """The prices of one quota at one price version (stored to re-bill duplicates)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    version: str = ""
    currency: str = "USD"
    prices: tuple[events.EndpointPrice, ...] = ()

    @classmethod
    def of(cls, spec: events.QuotaSpec) -> PriceList:
        return cls(version=spec.price_version, currency=spec.currency, prices=tuple(spec.prices))

    def price_for(self, endpoint: str) -> events.EndpointPrice | None:
        return self._by_endpoint.get(endpoint)

    @cached_property
    def _by_endpoint(self) -> dict[str, events.EndpointPrice]:
        return {p.endpoint: p for p in reversed(self.prices)}  # the first listed wins

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_json(cls, data: bytes | str) -> PriceList:
        return cls.model_validate_json(data)


UNPRICED = PriceList()


@dataclass(frozen=True)
class Charge:
    """What one usage event costs."""

    currency: str
    price_version: str
    amount_prompt: Decimal = _ZERO
    amount_cached: Decimal = _ZERO
    amount_completion: Decimal = _ZERO

    amount_total: Decimal = field(init=False)
    nanos: int = field(init=False)
    """`amount_total` in whole nano units: what the money counter is charged."""

    def __post_init__(self) -> None:
        total = self.amount_prompt + self.amount_cached + self.amount_completion
        object.__setattr__(self, "amount_total", total)
        object.__setattr__(self, "nanos", ledger.to_nanos(total) if total else 0)


def charge(event: events.UsageRecorded, prices: PriceList) -> Charge:
    price = prices.price_for(event.endpoint)
    if price is None:
        return Charge(prices.currency, prices.version)
    cached = min(event.cached_tokens, event.prompt_tokens)
    return Charge(
        currency=prices.currency,
        price_version=prices.version,
        amount_prompt=ledger.token_cost(event.prompt_tokens - cached, price.prompt),
        amount_cached=ledger.token_cost(cached, price.cached_prompt),
        amount_completion=ledger.token_cost(event.completion_tokens, price.completion),
    )


def billing_record(event: events.UsageRecorded, period: str, cost: Charge) -> events.BillingRecord:
    """The record of one usage event; the same event and charge always give the same record."""
    return events.BillingRecord(
        id=events.BillingRecord.id_for(event.id),
        occurred_at=event.occurred_at,
        request_id=event.id,
        namespace=event.namespace,
        token_name=event.token_name,
        endpoint=event.endpoint,
        model=event.model,
        quota=event.quota,
        period=period,
        prompt_tokens=event.prompt_tokens,
        cached_tokens=event.cached_tokens,
        completion_tokens=event.completion_tokens,
        currency=cost.currency,
        price_version=cost.price_version,
        amount_prompt=cost.amount_prompt,
        amount_cached=cost.amount_cached,
        amount_completion=cost.amount_completion,
        amount_total=cost.amount_total,
        charged_nanos=cost.nanos,
        outcome=event.outcome,
    )
