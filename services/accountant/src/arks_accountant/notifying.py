"""QuotaStateChanged notices: a core publish for routers listening now, and the latest
state per quota in KV `arks-quota-state` for routers that start later.

Which call announces a transition is decided inside the SETTLE script, so exactly one
accountant process announces each. Announcing is best effort on the wire: a notice
that fails to publish is logged, and `repair()` (called by the status loop) compares KV
with the state Valkey holds and announces again what KV lacks, so a notice lost with a
crash or an outage arrives within a status interval (in that failure case possibly from
two accountants at once).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Literal, get_args

import nats.errors
import nats.js.errors
from prometheus_client import Counter

from arks_accountant.keys import Account
from arks_common import events, subjects
from arks_common.errors import PermanentError
from arks_common.messaging import Bus

log = logging.getLogger(__name__)

Reason = Literal["exhausted", "reset", "limit_changed", "restored"]
REASONS: tuple[Reason, ...] = get_args(Reason)


def as_reason(value: str, default: Reason = "exhausted") -> Reason:
    """A reason string from the SETTLE script, as the event's type."""
    return next((r for r in REASONS if r == value), default)


def state_event(
    account: Account,
    *,
    version: int,
    period: str,
    exhausted: bool,
    exhausted_kinds: list[str],
    used: Mapping[str, int],
    limits: Mapping[str, int],
    reason: Reason,
) -> events.QuotaStateChanged:
    assert account.quota is not None
    return events.QuotaStateChanged(
        id=f"quota-state-{account.namespace}.{account.quota}-{version}-{reason}",
        namespace=account.namespace,
        quota=account.quota,
        period=period,
        exhausted=exhausted,
        exhausted_kinds=exhausted_kinds,
        used=dict(used),
        limits=dict(limits),
        reason=reason,
    )


class Notifier:
    def __init__(self, bus: Bus, notices: Counter) -> None:
        self._bus = bus
        self._notices = notices
        self.known: dict[tuple[str, str], tuple[str, bool]] = {}
        """(namespace, quota) → (period, exhausted) this process last put into KV."""
        self._suspect: dict[tuple[str, str], tuple[str, bool]] = {}

    async def announce(self, state: events.QuotaStateChanged, *, publish: bool = True) -> bool:
        """Publish the notice (unless `publish` is False) and store it as the latest state."""
        ok = True
        if publish:
            try:
                await self._bus.publish_core(
                    subjects.quota_state_subject(state.namespace, state.quota), state
                )
                self._notices.labels(state.reason).inc()
            except (nats.errors.Error, OSError) as exc:
                log.warning(
                    "quota notice for %s/%s not sent: %s", state.namespace, state.quota, exc
                )
                ok = False
        try:
            kv = await self._bus.kv(subjects.QUOTA_STATE_BUCKET)
            await kv.put(subjects.namespaced_key(state.namespace, state.quota), state.to_bytes())
            self.known[(state.namespace, state.quota)] = (state.period, state.exhausted)
        except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
            log.warning("quota state of %s/%s not stored: %s", state.namespace, state.quota, exc)
            ok = False
        return ok

    async def repair(self, state: events.QuotaStateChanged) -> None:
        """Make KV hold `state` if what it holds says otherwise, and publish it then: a
        transition decided by a call whose announcement failed (NATS down, a crash) is
        announced late rather than never. A disagreement must be seen on two calls in a
        row, so the moment between a script's decision and its own announcement (another
        process may look just then) never causes a second notice."""
        key = (state.namespace, state.quota)
        current = (state.period, state.exhausted)
        if self.known.get(key) == current:
            self._suspect.pop(key, None)
            return
        try:
            kv = await self._bus.kv(subjects.QUOTA_STATE_BUCKET)
            try:
                entry = await kv.get(subjects.namespaced_key(*key))
                stored = events.decode_as(events.QuotaStateChanged, entry.value or b"")
                if (stored.period, stored.exhausted) == current:
                    self.known[key] = current
                    self._suspect.pop(key, None)
                    return
            except (nats.js.errors.KeyNotFoundError, PermanentError):
                pass
        except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
            log.debug("quota state check of %s/%s failed: %s", *key, exc)
            return
        if self._suspect.get(key) != current:
            self._suspect[key] = current
            return
        del self._suspect[key]
        await self.announce(state)
