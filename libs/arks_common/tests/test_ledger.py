from datetime import UTC, datetime
from decimal import Decimal

import pytest

from arks_common import ledger


def test_periods_are_utc_calendar_periods() -> None:
    at = datetime(2026, 11, 28, 23, 59, 59, tzinfo=UTC)
    assert ledger.period_id("lifetime", at) == "lifetime"
    assert ledger.period_id("daily", at) == "d2026-11-28"
    assert ledger.period_id("monthly", at) == "m2026-11"
    assert ledger.period_start("daily", at) == datetime(2026, 11, 28, tzinfo=UTC)
    assert ledger.period_start("monthly", at) == datetime(2026, 11, 1, tzinfo=UTC)
    assert ledger.period_start("lifetime", at) is None
    with pytest.raises(ValueError):
        ledger.period_id("weekly", at)


def test_keys_of_one_quota_share_a_cluster_hash_tag() -> None:
    keys = [
        ledger.used_key("ns", "q", "lifetime", "total"),
        ledger.reserved_key("ns", "q", "lifetime", "cost"),
        ledger.reservation_key("ns", "q", "req-1"),
        ledger.reservation_index_key("ns", "q"),
        ledger.applied_key("ns", "q", "req-1"),
    ]
    assert all("{ns/q}" in key for key in keys)
    assert len(set(keys)) == len(keys)
    with pytest.raises(ValueError):
        ledger.used_key("ns", "q", "lifetime", "dollars")


def test_money_is_exact_and_charged_in_nanos() -> None:
    cost = ledger.token_cost(3, Decimal("0.15"))  # 3 tokens at $0.15 per million
    assert cost == Decimal("0.00000045")
    assert ledger.to_nanos(cost) == 450
    assert ledger.from_nanos(450) == Decimal("0.00000045")
    assert ledger.to_nanos(Decimal("0.0000000025")) == 2  # banker's rounding
    assert ledger.to_nanos(Decimal("0.0000000035")) == 4
