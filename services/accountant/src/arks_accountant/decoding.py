"""Stage 1 of a batch: decode, validate and price each delivered usage event.

A delivery becomes a `PricedEvent` (the event, the account and period it is charged to,
its charge under the quota's current prices and its stream sequence), or the
disposition it gets instead:

- `DeadLetter` with the reason when it can never be accounted: another message type in
  its type header, a body that is not a valid `UsageRecorded`, names that are not
  Kubernetes names, a `quota_period` that is not a period id;
- `Nak` (1 s) when it names a quota whose spec is not in KV yet (the KV watch can lag
  the router), for `consumer.unknown_quota_retries` deliveries; afterwards it is
  priced without prices or limits.

No I/O: specs come from the in-memory `QuotaSpecs` view, so nothing here fails
transiently.
"""

from __future__ import annotations

import logging
import re

from arks_accountant import keys
from arks_accountant.deliveries import Delivery
from arks_accountant.pricing import UNPRICED, charge
from arks_accountant.settling import PricedEvent
from arks_accountant.specs import QuotaRef, QuotaSpecs
from arks_common import events, ledger
from arks_common.errors import PermanentError
from arks_common.messaging import DeadLetter, Disposition, Nak

log = logging.getLogger(__name__)

_PERIOD_RE = re.compile(r"^(lifetime|d\d{4}-\d{2}-\d{2}|m\d{4}-\d{2})$")
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_TYPE_HEADER = events.TYPE_HEADER.encode()

# Names and periods already found valid: most events repeat a few of each, so the
# regular expressions run once per distinct value (bounded: cleared beyond 10,000).
_VALID_NAMES: set[tuple[str, str, str, str | None]] = set()
_VALID_PERIODS: set[str] = set()


def invalid_reason(event: events.UsageRecorded) -> str | None:
    """Why an event cannot be accounted (dead-letter reason), or None."""
    names = (event.namespace, event.token_name, event.endpoint, event.quota)
    if names in _VALID_NAMES and (
        not event.quota or not event.quota_period or event.quota_period in _VALID_PERIODS
    ):
        return None
    problem = _check(event)
    if problem is None:
        if len(_VALID_NAMES) > 10_000:
            _VALID_NAMES.clear()
            _VALID_PERIODS.clear()
        _VALID_NAMES.add(names)
        if event.quota_period:
            _VALID_PERIODS.add(event.quota_period)
    return problem


def _check(event: events.UsageRecorded) -> str | None:
    for what, value in (
        ("namespace", event.namespace),
        ("token_name", event.token_name),
        ("endpoint", event.endpoint),
        ("quota", event.quota or "x"),
    ):
        if not _NAME_RE.match(value):
            return f"{what} {value!r} is not a Kubernetes name"
    if event.quota and event.quota_period and not _PERIOD_RE.match(event.quota_period):
        return f"quota_period {event.quota_period!r} is not a period id"
    return None


class Decoder:
    """Turns deliveries into priced events; remembers every quota an event named."""

    def __init__(self, specs: QuotaSpecs, *, unknown_quota_retries: int) -> None:
        self._specs = specs
        self._unknown_quota_retries = unknown_quota_retries
        self.seen_quotas: set[QuotaRef] = set()
        """Quotas named by events (the sweeper visits them even without a spec)."""

    def decode(self, msg: Delivery) -> PricedEvent | Disposition:
        declared = msg.header(_TYPE_HEADER)
        if declared is not None and declared != events.UsageRecorded.TYPE:
            return DeadLetter(f"not a usage event: {events.TYPE_HEADER} is {declared!r}")
        try:
            event = events.decode_as(events.UsageRecorded, msg.data)
        except PermanentError as exc:
            return DeadLetter(exc.message)
        problem = invalid_reason(event)
        if problem is not None:
            return DeadLetter(f"usage event {event.id}: {problem}")
        account = keys.Account.for_usage(event.namespace, event.quota, event.token_name)
        spec = None
        if event.quota:
            spec = self._specs.get(event.namespace, event.quota)
            self.seen_quotas.add((event.namespace, event.quota))
            if spec is None and msg.num_delivered < self._unknown_quota_retries:
                log.info(
                    "quota %s/%s has no spec yet; retrying %s",
                    event.namespace,
                    event.quota,
                    event.id,
                )
                return Nak(1.0)
        prices = (
            self._specs.prices(event.namespace, event.quota) if spec and event.quota else None
        ) or UNPRICED
        if not event.quota:
            period = ledger.LIFETIME
        elif event.quota_period:
            period = event.quota_period
        else:
            period = ledger.period_id(
                spec.reset_period if spec else ledger.LIFETIME, event.started_at
            )
        return PricedEvent.of(event, account, period, charge(event, prices), msg.stream_sequence)
