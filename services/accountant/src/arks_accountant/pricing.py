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


@dataclass(frozen=True, slots=True)
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
    texts: tuple[str, str, str, str] = field(init=False, repr=False, compare=False)
    """The four amounts as they go on the wire (prompt, cached, completion, total)."""

    def __post_init__(self) -> None:
        total = self.amount_prompt + self.amount_cached + self.amount_completion
        object.__setattr__(self, "amount_total", total)
        object.__setattr__(self, "nanos", ledger.to_nanos(total) if total else 0)
        texts = (self.amount_prompt, self.amount_cached, self.amount_completion, total)
        object.__setattr__(self, "texts", tuple(format(a, "f") for a in texts))


_CHARGES: dict[tuple[object, ...], Charge] = {}
_CHARGES_KEPT = 100_000


def charge(event: events.UsageRecorded, prices: PriceList) -> Charge:
    """The event's cost at `prices` (charges are immutable and shared: the same prices and
    token counts always cost the same, so computed ones are kept for the next event)."""
    price = prices.price_for(event.endpoint)
    if price is None:
        key: tuple[object, ...] = (prices.currency, prices.version)
    else:
        cached = min(event.cached_tokens, event.prompt_tokens)
        key = (
            prices.currency,
            prices.version,
            price.prompt,
            price.cached_prompt,
            price.completion,
            event.prompt_tokens - cached,
            cached,
            event.completion_tokens,
        )
    found = _CHARGES.get(key)
    if found is not None:
        return found
    if price is None:
        cost = Charge(prices.currency, prices.version)
    else:
        cost = Charge(
            currency=prices.currency,
            price_version=prices.version,
            amount_prompt=ledger.token_cost(event.prompt_tokens - cached, price.prompt),
            amount_cached=ledger.token_cost(cached, price.cached_prompt),
            amount_completion=ledger.token_cost(event.completion_tokens, price.completion),
        )
    if len(_CHARGES) >= _CHARGES_KEPT:
        _CHARGES.clear()
    _CHARGES[key] = cost
    return cost


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


def bill_for(event: events.UsageRecorded, period: str, cost: Charge) -> Bill:
    """`Bill.of(billing_record(...))`, without building and validating the model.

    The body is `BillingRecord.to_bytes()`: the same fields in the same order through the
    same encoder (orjson writes datetimes as pydantic does, `Z` for UTC). What the model
    would refuse (negative nanos from a negative price) or write differently (an offset
    with seconds) goes through the model, so it fails or reads exactly the same.
    """
    occurred = event.occurred_at
    offset = occurred.utcoffset()
    if cost.nanos < 0 or (offset is not None and offset.seconds % 60):
        return Bill.of(billing_record(event, period, cost))
    record_id = events.BillingRecord.id_for(event.id)
    amount_prompt, amount_cached, amount_completion, amount_total = cost.texts
    body = orjson.dumps(
        {
            "id": record_id,
            "occurred_at": occurred,
            "request_id": event.id,
            "namespace": event.namespace,
            "token_name": event.token_name,
            "endpoint": event.endpoint,
            "model": event.model,
            "quota": event.quota,
            "period": period,
            "prompt_tokens": event.prompt_tokens,
            "cached_tokens": event.cached_tokens,
            "completion_tokens": event.completion_tokens,
            "currency": cost.currency,
            "price_version": cost.price_version,
            "amount_prompt": amount_prompt,
            "amount_cached": amount_cached,
            "amount_completion": amount_completion,
            "amount_total": amount_total,
            "charged_nanos": cost.nanos,
            "outcome": event.outcome.value,
        },
        option=orjson.OPT_UTC_Z,
    )
    subject = _billing_subject(event.namespace, event.quota, event.token_name)
    return Bill(subject, billing_headers(record_id), body, record_id)
