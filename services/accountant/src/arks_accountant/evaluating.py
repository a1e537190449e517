"""Re-deciding exhaustion when nothing is consumed: limits change, periods roll over.

A changed spec (limit raised or lowered) is re-evaluated at once with reason
`limit_changed`; a daily or monthly quota whose period id moved on is re-evaluated with
the script's own reason (`reset` when the old period was exhausted). The SETTLE script
decides, atomically, whether the state changed, so a notice goes out once even when
every accountant evaluates the same quota.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from arks_accountant.accounting import Accountant
from arks_accountant.specs import QuotaRef
from arks_common import ledger
from arks_common.errors import RetryableError

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0


async def evaluate_forever(accountant: Accountant, stop: asyncio.Event) -> None:
    specs = accountant.specs
    periods: dict[QuotaRef, str] = {}
    retry: set[QuotaRef] = set()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(specs.changed.wait(), TICK_SECONDS)
        if stop.is_set():
            return
        now = accountant.now()
        changed = specs.take_dirty() | retry
        current = {
            (s.namespace, s.name): ledger.period_id(s.reset_period, now) for s in specs.all()
        }
        rolled = {ref for ref, period in current.items() if periods.get(ref, period) != period}
        try:
            if changed:
                await accountant.evaluate(changed, "limit_changed")
            if rolled - changed:
                await accountant.evaluate(rolled - changed, "")
        except RetryableError as exc:
            log.warning("quota evaluation postponed: %s", exc.message)
            retry = changed | rolled
            continue
        retry = set()
        periods = current
