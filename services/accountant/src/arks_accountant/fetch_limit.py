"""How many messages a consumer lane fetches next: fewer while a hot quota's ledger
entry is over its budget.

A hot quota's ledger entry carries every lane's in-flight markers (~70 bytes an event)
and must fit in one NATS message (`max_payload`). Each time an entry written by this
process went over the entry budget (`LedgerRecorder.over_budget` counts them), the
fetch size of this process's lanes halves; after a second without that it grows back
by half, up to `consumer.batch`. The current size is the `arks_accountant_fetch_limit`
gauge. No I/O, no failure modes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import Gauge

_GROW_AFTER = 1.0


class FetchLimit:
    """`size()` is asked before every pull (`consume_lane(batch_size=...)`)."""

    def __init__(self, base: int, over_budget: Callable[[], int], gauge: Gauge) -> None:
        self._base = base
        self._over_budget = over_budget
        self._gauge = gauge
        self._over_seen = 0
        self._scale = 1.0
        self._scaled_at = 0.0

    def size(self) -> int:
        base = self._base
        now = time.monotonic()
        over = self._over_budget()
        if over != self._over_seen:
            self._over_seen = over
            self._scale = max(1 / base, self._scale / 2)
            self._scaled_at = now
        elif self._scale < 1 and now - self._scaled_at > _GROW_AFTER:
            self._scale = min(1.0, self._scale * 1.5)
            self._scaled_at = now
        size = max(1, int(base * self._scale))
        self._gauge.set(size)
        return size
