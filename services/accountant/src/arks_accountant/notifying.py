"""QuotaStateChanged notices: a core publish for routers listening now, and the latest
state per quota in KV `arks-quota-state` for routers that start later.

Which call announces a transition is decided inside the SETTLE script, so exactly one
accountant process announces each. Announcing is best effort on the wire: a notice
that fails to publish is logged, and the KV entry is repaired by `repair()` from the
state Valkey holds (the status loop calls it), so routers that read KV converge.
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
        """Make KV hold `state` if what it holds says otherwise (no notice is published)."""
        key = (state.namespace, state.quota)
        if self.known.get(key) == (state.period, state.exhausted):
            return
        try:
            kv = await self._bus.kv(subjects.QUOTA_STATE_BUCKET)
            try:
                entry = await kv.get(subjects.namespaced_key(*key))
                stored = events.decode_as(events.QuotaStateChanged, entry.value or b"")
                if (stored.period, stored.exhausted) == (state.period, state.exhausted):
                    self.known[key] = (state.period, state.exhausted)
                    return
            except (nats.js.errors.KeyNotFoundError, PermanentError):
                pass
        except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
            log.debug("quota state check of %s/%s failed: %s", *key, exc)
            return
        await self.announce(state, publish=False)
