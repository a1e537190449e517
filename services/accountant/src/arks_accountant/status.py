"""ArksQuota status write-back: what is reported, and the platform seam that writes it.

`StatusWriter` is the one thing a platform implements: the local platform writes the
`arks-resources` KV store (`arks_accountant.local_status`); a Kubernetes implementation
would patch the status subresource. `merge_status()` is the platform-neutral part: it
turns a report into the new `status` dict, keeping `lastUpdateTime` of values that did
not change and every field the accountant does not own (conditions, observedGeneration).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol, get_args

from pydantic import ValidationError

from arks_common.resources import ArksQuotaStatus, BudgetStatus, QuotaType, QuotaUsage

log = logging.getLogger(__name__)

QUOTA_TYPES: tuple[QuotaType, ...] = get_args(QuotaType)


@dataclass(frozen=True)
class QuotaStatusReport:
    """Usage of one quota in its current period."""

    namespace: str
    name: str
    used: Mapping[QuotaType, int]
    """Tokens used per type the quota limits (upstream reports exactly those)."""
    spent: Decimal | None
    """Money spent, when the quota has a budget or prices."""
    currency: str
    period_start: datetime | None
    at: datetime

    def same_values(self, other: QuotaStatusReport | None) -> bool:
        return other is not None and (
            dict(self.used),
            self.spent,
            self.currency,
            self.period_start,
        ) == (dict(other.used), other.spent, other.currency, other.period_start)


class StatusWriter(Protocol):
    """Writes a quota's usage into its ArksQuota status on one platform."""

    async def write_quota_status(self, report: QuotaStatusReport) -> bool:
        """Write the report; False when the ArksQuota does not exist (nothing written).

        Raises RetryableError when the platform is unavailable or keeps conflicting.
        """
        ...


def _dump(model: QuotaUsage | BudgetStatus) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def merge_status(status: Mapping[str, Any], report: QuotaStatusReport) -> dict[str, Any] | None:
    """The new status with the report applied, or None when nothing would change."""
    try:
        current = ArksQuotaStatus.model_validate(dict(status))
    except ValidationError as exc:
        log.warning("replacing an invalid status of ArksQuota %s: %s", report.name, exc)
        current = ArksQuotaStatus()
    entries = []
    for type_ in QUOTA_TYPES:
        if type_ not in report.used:
            continue
        used = report.used[type_]
        old = next((u for u in current.quota_status if u.type == type_), None)
        if old is not None and old.used == used:
            entries.append(_dump(old))
        else:
            entries.append(_dump(QuotaUsage(type=type_, used=used, last_update_time=report.at)))
    new = dict(status)
    new["quotaStatus"] = entries
    if report.spent is None:
        new.pop("budgetStatus", None)
    else:
        old_budget = current.budget_status
        if (
            old_budget is not None
            and old_budget.spent == report.spent
            and old_budget.currency == report.currency
        ):
            new["budgetStatus"] = _dump(old_budget)
        else:
            new["budgetStatus"] = _dump(
                BudgetStatus(
                    spent=report.spent, currency=report.currency, last_update_time=report.at
                )
            )
    if report.period_start is None:
        new.pop("periodStart", None)
    else:
        new["periodStart"] = report.period_start.strftime("%Y-%m-%dT%H:%M:%SZ")
    return None if new == dict(status) else new
