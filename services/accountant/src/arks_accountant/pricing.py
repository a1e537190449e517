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
    wire: bytes = field(init=False, repr=False, compare=False)
    """This charge's part of a BillingRecord body, `"currency"` to `"charged_nanos"`."""

    def __post_init__(self) -> None:
        total = self.amount_prompt + self.amount_cached + self.amount_completion
        nanos = ledger.to_nanos(total) if total else 0
        object.__setattr__(self, "amount_total", total)
        object.__setattr__(self, "nanos", nanos)
        part = {
            "currency": self.currency,
            "price_version": self.price_version,
            "amount_prompt": format(self.amount_prompt, "f"),
            "amount_cached": format(self.amount_cached, "f"),
            "amount_completion": format(self.amount_completion, "f"),
            "amount_total": format(total, "f"),
            "charged_nanos": nanos,
        }
        object.__setattr__(self, "wire", orjson.dumps(part)[1:-1])


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


_OUTCOMES = {o: orjson.dumps(o.value) for o in events.Outcome}
_MIDDLES: dict[tuple[str, str, str, str, str | None, str], bytes] = {}
_KEPT = 100_000


def bill_for(event: events.UsageRecorded, period: str, cost: Charge) -> Bill:
    """`Bill.of(billing_record(...))`, without building and validating the model.

    The body is `BillingRecord.to_bytes()`: the same fields in the same order, each
    encoded by orjson as the model's serialization is (datetimes as pydantic writes them,
    `Z` for UTC), joined without spaces as orjson joins them; the parts shared by many
    records (names, period, the charge) are encoded once. What the model would refuse
    (negative nanos from a negative price) or write differently (an offset with seconds)
    goes through the model, so it fails or reads exactly the same.
    """
    occurred = event.occurred_at
    offset = occurred.utcoffset()
    if cost.nanos < 0 or (offset is not None and offset.seconds % 60):
        return Bill.of(billing_record(event, period, cost))
    key = (event.namespace, event.token_name, event.endpoint, event.model, event.quota, period)
    middle = _MIDDLES.get(key)
    if middle is None:
        if len(_MIDDLES) >= _KEPT:
            _MIDDLES.clear()
        middle = _MIDDLES[key] = orjson.dumps(
            {
                "namespace": event.namespace,
                "token_name": event.token_name,
                "endpoint": event.endpoint,
                "model": event.model,
                "quota": event.quota,
                "period": period,
            }
        )[1:-1]
    record_id = events.BillingRecord.id_for(event.id)
    head = orjson.dumps(
        {"id": record_id, "occurred_at": occurred, "request_id": event.id},
        option=orjson.OPT_UTC_Z,
    )
    counts = b'"prompt_tokens":%d,"cached_tokens":%d,"completion_tokens":%d' % (
        event.prompt_tokens,
        event.cached_tokens,
        event.completion_tokens,
    )
    body = b"".join(
        (
            head[:-1],
            b",",
            middle,
            b",",
            counts,
            b",",
            cost.wire,
            b',"outcome":',
            _OUTCOMES[event.outcome],
            b"}",
        )
    )
    subject = _billing_subject(event.namespace, event.quota, event.token_name)
    return Bill(subject, billing_headers(record_id), body, record_id)
