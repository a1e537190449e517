"""The status loop: usage into ArksQuota.status at a bounded rate, and quota-state repair.

Every `status.interval` seconds it reads every known quota's current-period counters
from Valkey in one pipeline and writes a quota's status only when its values changed
since this process last wrote them. It never writes from a Valkey that is not restored
(the epoch sentinel is read in the same pipeline): an empty Valkey must not turn into
zeros in a status. The same pass makes KV `arks-quota-state` agree with Valkey's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

import redis.exceptions

from arks_accountant import keys
from arks_accountant.accounting import Accountant
from arks_accountant.metrics import Metrics
from arks_accountant.notifying import state_event
from arks_accountant.settling import limits_of
from arks_accountant.status import QUOTA_TYPES, QuotaStatusReport, StatusWriter
from arks_common import events, ledger
from arks_common.errors import RetryableError

log = logging.getLogger(__name__)


class StatusLoop:
    def __init__(
        self, accountant: Accountant, writer: StatusWriter | None, metrics: Metrics
    ) -> None:
        self._accountant = accountant
        self._writer = writer
        self._metrics = metrics
        self._written: dict[tuple[str, str], QuotaStatusReport] = {}

    async def run(self, interval: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            if stop.is_set():
                return
            try:
                await self.once()
            except (
                RetryableError,
                redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError,
            ) as exc:
                log.warning("status pass skipped: %s", exc)

    async def once(self) -> None:
        accountant = self._accountant
        specs = accountant.specs.all()
        epoch = accountant.restorer.epoch
        if not specs or epoch is None:
            return
        now = accountant.now()
        pipe = accountant.redis.pipeline(transaction=False)
        pipe.get(keys.EPOCH_KEY)
        for spec in specs:
            account = keys.Account(spec.namespace, spec.name)
            period = ledger.period_id(spec.reset_period, now)
            fields = [keys.period_field(period, kind) for kind in keys.KINDS]
            pipe.hmget(account.hash_key, [*fields, "sp", "se", "ver"])
        replies = await pipe.execute()
        if replies[0] is None or _int(replies[0]) != epoch:
            return
        for spec, values in zip(specs, replies[1:], strict=True):
            await self._report(spec, values, now)

    async def _report(self, spec: events.QuotaSpec, values: list[object], now: datetime) -> None:
        counts = [_int(v) for v in values[:4]]
        used = dict(zip(keys.KINDS, counts, strict=True))
        limited = {limit.type for limit in spec.limits}
        report = QuotaStatusReport(
            namespace=spec.namespace,
            name=spec.name,
            used={t: used[ledger.QuotaKind(t)] for t in QUOTA_TYPES if t in limited},
            spent=ledger.from_nanos(used[ledger.QuotaKind.COST])
            if spec.budget_nanos is not None or spec.prices
            else None,
            currency=spec.currency,
            period_start=ledger.period_start(spec.reset_period, now),
            at=now,
        )
        ref = (spec.namespace, spec.name)
        if self._writer is not None and not report.same_values(self._written.get(ref)):
            try:
                found = await self._writer.write_quota_status(report)
            except RetryableError as exc:
                self._metrics.status_writes.labels("failed").inc()
                log.warning("status of ArksQuota %s/%s not written: %s", *ref, exc.message)
            else:
                self._metrics.status_writes.labels("written" if found else "missing").inc()
                if found:
                    self._written[ref] = report
        sp, se, ver = values[4], values[5], values[6]
        if sp is not None:
            period = sp.decode() if isinstance(sp, bytes) else str(sp)
            await self._accountant.notifier.repair(
                state_event(
                    keys.Account(spec.namespace, spec.name),
                    version=_int(ver),
                    period=period,
                    exhausted=se in (b"1", "1"),
                    exhausted_kinds=[],
                    used={k.value: v for k, v in used.items()},
                    limits=limits_of(spec),
                    reason="restored",
                )
            )


def _int(value: object) -> int:
    if isinstance(value, bytes | str):
        return int(value)
    return 0
