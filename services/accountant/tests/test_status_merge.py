"""ArksQuota status merging: values, lastUpdateTime kept when unchanged, foreign fields kept."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from arks_accountant.status import QuotaStatusReport, merge_status

AT = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
LATER = datetime(2026, 5, 1, 12, 0, 9, tzinfo=UTC)


def report(at: datetime = AT, total: int = 50, spent: str | None = "1.5") -> QuotaStatusReport:
    return QuotaStatusReport(
        namespace="default",
        name="q",
        used={"prompt": 20, "total": total},
        spent=Decimal(spent) if spent is not None else None,
        currency="EUR",
        period_start=datetime(2026, 5, 1, tzinfo=UTC),
        at=at,
    )


def test_first_write() -> None:
    status = merge_status({"conditions": [{"type": "Ready", "status": "True"}]}, report())
    assert status == {
        "conditions": [{"type": "Ready", "status": "True"}],
        "quotaStatus": [
            {"type": "prompt", "used": 20, "lastUpdateTime": "2026-05-01T12:00:00Z"},
            {"type": "total", "used": 50, "lastUpdateTime": "2026-05-01T12:00:00Z"},
        ],
        "budgetStatus": {
            "spent": "1.5",
            "currency": "EUR",
            "lastUpdateTime": "2026-05-01T12:00:00Z",
        },
        "periodStart": "2026-05-01T00:00:00Z",
    }


def test_unchanged_values_keep_their_time_and_change_nothing() -> None:
    first = merge_status({}, report())
    assert first is not None
    assert merge_status(first, report(at=LATER)) is None
    second = merge_status(first, report(at=LATER, total=51))
    assert second is not None
    times = {q["type"]: q["lastUpdateTime"] for q in second["quotaStatus"]}
    assert times == {"prompt": "2026-05-01T12:00:00Z", "total": "2026-05-01T12:00:09Z"}
    assert second["budgetStatus"]["lastUpdateTime"] == "2026-05-01T12:00:00Z"


def test_no_budget_drops_budget_status_and_invalid_status_is_replaced() -> None:
    status = merge_status({"quotaStatus": "garbage", "observedGeneration": 3}, report(spent=None))
    assert status is not None
    assert "budgetStatus" not in status
    assert status["observedGeneration"] == 3
    assert [q["type"] for q in status["quotaStatus"]] == ["prompt", "total"]
