"""Exact prices: cached prompt tokens, banker's rounding to nanos, free endpoints."""

from __future__ import annotations

from decimal import Decimal

from arks_accountant.pricing import UNPRICED, PriceList, billing_record, charge
from arks_accountant.publishing import wire_bytes
from arks_common import events, ledger
from arks_common.testing.builders import make_quota_spec, make_usage_event


def prices(**values: str) -> PriceList:
    price = events.EndpointPrice(endpoint="qwen-7b", **{k: Decimal(v) for k, v in values.items()})
    return PriceList.of(make_quota_spec(prices=[price], price_version="pv-1"))


def test_cached_tokens_are_priced_at_the_cached_price() -> None:
    cost = charge(
        make_usage_event(prompt_tokens=1000, cached_tokens=400, completion_tokens=10),
        prices(prompt="3", cached_prompt="0.3", completion="15"),
    )
    assert cost.amount_prompt == Decimal("0.0018")
    assert cost.amount_cached == Decimal("0.00012")
    assert cost.amount_completion == Decimal("0.00015")
    assert cost.amount_total == Decimal("0.00207")
    assert cost.nanos == 2_070_000
    assert cost.price_version == "pv-1"


def test_more_cached_than_prompt_tokens_is_capped() -> None:
    cost = charge(
        make_usage_event(prompt_tokens=10, cached_tokens=50, completion_tokens=0),
        prices(prompt="1", cached_prompt="0.5", completion="1"),
    )
    assert cost.amount_prompt == 0
    assert cost.amount_cached == Decimal("0.000005")


def test_nanos_use_bankers_rounding() -> None:
    # 1 token at 0.0000005 per million costs 5e-13: far below half a nano
    tiny = charge(
        make_usage_event(prompt_tokens=1, completion_tokens=0), prices(prompt="0.0000005")
    )
    assert tiny.amount_total == Decimal("5E-13")
    assert tiny.nanos == 0
    half = charge(make_usage_event(prompt_tokens=1, completion_tokens=0), prices(prompt="0.0005"))
    assert half.amount_total == Decimal("5E-10")
    assert half.nanos == ledger.to_nanos(Decimal("5E-10")) == 0  # 0.5 nanos: half to even
    odd = charge(make_usage_event(prompt_tokens=3, completion_tokens=0), prices(prompt="0.0005"))
    assert odd.nanos == 2  # 1.5 nanos rounds to the even 2


def test_unlisted_endpoint_and_unpriced_requests_cost_nothing() -> None:
    other = charge(make_usage_event(endpoint="other", prompt_tokens=99), prices(prompt="1"))
    assert other.amount_total == 0
    assert other.price_version == "pv-1"
    none = charge(make_usage_event(prompt_tokens=99), UNPRICED)
    assert none.nanos == 0
    assert none.price_version == ""


def test_billing_record_is_deterministic() -> None:
    event = make_usage_event(prompt_tokens=5, completion_tokens=7)
    cost = charge(event, prices(prompt="2", completion="4"))
    first = billing_record(event, "lifetime", cost)
    again = billing_record(event, "lifetime", cost)
    assert first.to_bytes() == again.to_bytes()
    assert first.id == f"bill-{event.id}"
    assert first.occurred_at == event.occurred_at
    assert first.charged_nanos == 38_000
    assert events.BillingRecord.from_bytes(first.to_bytes()) == first
    assert wire_bytes(first) == first.to_bytes()
    unpriced = billing_record(
        make_usage_event(quota=None, quota_period=None), "lifetime", charge(event, UNPRICED)
    )
    assert wire_bytes(unpriced) == unpriced.to_bytes()


def test_price_list_round_trips() -> None:
    listed = prices(prompt="0.123456789012", cached_prompt="0.1", completion="2")
    assert PriceList.from_json(listed.to_json()) == listed
