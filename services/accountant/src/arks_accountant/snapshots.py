"""Stage 4 of a batch: record what SETTLE left in each account in the durable ledger.

One compare-and-set write per account the call touched (all in flight at once, through
`LedgerRecorder`, which combines concurrent writes of one entry): the account hash as
the script returned it, the price lists named, and — for a consumer lane's batch — the
lane's in-flight done-markers (its unconfirmed batches' plus this batch's, see
`arks_accountant.lanes`). Quota evaluations write the hash alone.

Failure modes: per account, False when the entry belongs to another epoch (a restore
happened after the batch was applied: the restore gate is invalidated and the batch's
events must be redelivered, not acked); NATS unreachable raises RetryableError (the
batch is held and retried).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from prometheus_client import Counter

from arks_accountant import keys
from arks_accountant.lanes import BatchMarkers, Lane
from arks_accountant.pricing import PriceList
from arks_accountant.recording import LaneMarkers, LedgerRecorder, Snapshot
from arks_accountant.restoring import Restorer
from arks_accountant.settling import AccountOutcome
from arks_common.errors import RetryableError

log = logging.getLogger(__name__)


class SnapshotWriter:
    """Writes the accounts of one SETTLE call to the ledger; counts CAS conflicts."""

    def __init__(self, recorder: LedgerRecorder, restorer: Restorer, conflicts: Counter) -> None:
        self._recorder = recorder
        self._restorer = restorer
        self._conflicts = conflicts
        self._conflicts_seen = 0

    async def write(
        self,
        epoch: int,
        accounts: Sequence[AccountOutcome],
        prices: Mapping[keys.Account, dict[str, PriceList]],
        lane_batch: tuple[Lane, BatchMarkers] | None,
    ) -> dict[keys.Account, bool]:
        """Per account, whether its entry now holds this snapshot."""

        async def one(outcome: AccountOutcome) -> bool:
            account = outcome.account
            owned: dict[str, LaneMarkers] = {}
            if lane_batch is not None:
                lane, batch = lane_batch
                owned[lane.id] = lane.inflight(account, batch)
            snapshot = Snapshot(
                epoch, outcome.version, outcome.fields, owned, prices.get(account, {})
            )
            if await self._recorder.record(account, snapshot):
                return True
            log.warning("ledger of %s moved to another epoch; redelivering", account.ledger_key)
            await self._restorer.invalidate(epoch)
            return False

        try:
            async with asyncio.TaskGroup() as tg:
                tasks = {a.account: tg.create_task(one(a)) for a in accounts}
        except* RetryableError as group:
            raise RetryableError(str(group.exceptions[0])) from group
        conflicts = self._recorder.conflicts
        self._conflicts.inc(conflicts - self._conflicts_seen)
        self._conflicts_seen = conflicts
        return {account: task.result() for account, task in tasks.items()}
