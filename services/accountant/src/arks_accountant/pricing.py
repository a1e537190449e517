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
from typing import Protocol

import orjson
from pydantic import BaseModel, ConfigDict

from arks_accountant.decoding import Usage
from arks_accountant.publishing import Bill, billing_headers
from arks_common import events, ledger, subjects

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


class TokenCounts(Protocol):
    """What pricing reads of a usage event (`UsageRecorded` or `decoding.Usage`)."""

    @property
    def endpoint(self) -> str: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def cached_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...


def charge(event: TokenCounts, prices: PriceList) -> Charge:
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


_subjects: dict[tuple[str, str | None, str], bytes] = {}


def _billing_subject(namespace: str, quota: str | None, token_name: str) -> bytes:
    key = (namespace, quota, token_name)
    subject = _subjects.get(key)
    if subject is None:
        if len(_subjects) > 100_000:
            _subjects.clear()
        subject = _subjects[key] = subjects.billing_subject(
            namespace, quota=quota, token_name=token_name
        ).encode()
    return subject


def bill_for(usage: Usage, period: str, cost: Charge) -> Bill:
    """`Bill.of(billing_record(...))` of a decoded event, without building the model.

    The body is `BillingRecord.to_bytes()` (same fields, same order, same encoder); a
    charge the model would refuse (negative nanos from a negative price) goes through
    the model so it fails the same way.
    """
    if cost.nanos < 0:
        return Bill.of(billing_record(_as_event(usage), period, cost))
    record_id = events.BillingRecord.id_for(usage.id)
    body = orjson.dumps(
        {
            "id": record_id,
            "occurred_at": usage.occurred_at,
            "request_id": usage.id,
            "namespace": usage.namespace,
            "token_name": usage.token_name,
            "endpoint": usage.endpoint,
            "model": usage.model,
            "quota": usage.quota,
            "period": period,
            "prompt_tokens": usage.prompt_tokens,
            "cached_tokens": usage.cached_tokens,
            "completion_tokens": usage.completion_tokens,
            "currency": cost.currency,
            "price_version": cost.price_version,
            "amount_prompt": format(cost.amount_prompt, "f"),
            "amount_cached": format(cost.amount_cached, "f"),
            "amount_completion": format(cost.amount_completion, "f"),
            "amount_total": format(cost.amount_total, "f"),
            "charged_nanos": cost.nanos,
            "outcome": usage.outcome,
        }
    )
    subject = _billing_subject(usage.namespace, usage.quota, usage.token_name)
    return Bill(subject, billing_headers(record_id), body, record_id)


def _as_event(usage: Usage) -> events.UsageRecorded:
    return events.UsageRecorded.model_validate(
        {
            "id": usage.id,
            "occurred_at": usage.occurred_at,
            "namespace": usage.namespace,
            "token_name": usage.token_name,
            "endpoint": usage.endpoint,
            "model": usage.model,
            "quota": usage.quota,
            "quota_period": usage.quota_period,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "cached_tokens": usage.cached_tokens,
            "outcome": usage.outcome,
            "started_at": usage.started_at,
        }
    )
