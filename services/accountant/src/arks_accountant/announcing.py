"""Stage 6 of a batch (and of quota evaluations): announce the exhaustion changes SETTLE
decided, and the state of every quota after a restore.

SETTLE decides each transition inside the script, so exactly one call announces it; this
module only turns the script's account outcome (or a restored ledger entry) into a
`QuotaStateChanged` with the quota's current limits and hands it to the `Notifier`
(core publish plus KV `arks-quota-state`).

Failure modes: none raised; a notice the Notifier could not publish or store is logged
there and repaired later by the status loop (`Notifier.repair`).
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter

from arks_accountant import keys
from arks_accountant.notifying import Notifier, as_reason, state_event
from arks_accountant.restoring import Restored
from arks_accountant.settling import AccountOutcome, AccountTerms, limits_of
from arks_accountant.specs import QuotaSpecs


class Announcer:
    """Quota notices from settlement outcomes and restores."""

    def __init__(self, notifier: Notifier, specs: QuotaSpecs, restores: Counter) -> None:
        self._notifier = notifier
        self._specs = specs
        self._restores = restores

    async def changed(self, outcome: AccountOutcome, terms: Sequence[AccountTerms]) -> None:
        """The transition SETTLE decided for one account (`outcome.notice` is set)."""
        term = next(t for t in terms if t.account == outcome.account)
        await self._notifier.announce(
            state_event(
                outcome.account,
                version=outcome.version,
                period=term.current_period,
                exhausted=outcome.exhausted,
                exhausted_kinds=outcome.exhausted_kinds,
                used=outcome.used,
                limits=limits_of(term.spec) if term.spec else {},
                reason=as_reason(outcome.reason),
            )
        )

    async def restored(self, restored: Restored) -> None:
        """The state of every restored quota (reason `restored`), counted as one restore."""
        self._restores.inc()
        for account, entry in restored.accounts:
            period = entry.fields.get("sp")
            if account.quota is None or period is None:
                continue
            spec = self._specs.get(account.namespace, account.quota)
            used = {
                k.value: int(entry.fields.get(keys.period_field(period, k), "0"))
                for k in keys.KINDS
            }
            await self._notifier.announce(
                state_event(
                    account,
                    version=entry.version,
                    period=period,
                    exhausted=entry.fields.get("se") == "1",
                    exhausted_kinds=[],
                    used=used,
                    limits=limits_of(spec) if spec else {},
                    reason="restored",
                )
            )
