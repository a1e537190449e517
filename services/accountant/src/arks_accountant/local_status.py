"""StatusWriter of the local platform: ArksQuota objects in the `arks-resources` KV store.

`ResourceStore.update_status` retries compare-and-set conflicts with the reconciler and
the CLI itself; a store that stays unavailable surfaces as RetryableError.
"""

from __future__ import annotations

from typing import Any

from arks_accountant.status import QuotaStatusReport, merge_status
from arks_common.store import ResourceStore

KIND = "ArksQuota"


class LocalStatusWriter:
    """Writes quota usage into ArksQuota.status in the local resource store."""

    def __init__(self, store: ResourceStore) -> None:
        self._store = store

    async def write_quota_status(self, report: QuotaStatusReport) -> bool:
        def mutate(status: dict[str, Any]) -> dict[str, Any] | None:
            return merge_status(status, report)

        written = await self._store.update_status(KIND, report.namespace, report.name, mutate)
        return written is not None
