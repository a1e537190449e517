"""Outlier ejection: a backend that keeps failing is left alone for a while.

Passive detection, as Envoy does it: every proxied attempt reports success or
failure (refused or reset connection, timeout, 5xx). `eject_after_failures`
consecutive failures eject the backend for `eject_seconds x n` (n = how many times it
was ejected recently, capped at `max_eject_seconds`). A success resets the streak; a
backend that stays healthy for a full `max_eject_seconds` after its last ejection
starts over at n = 1. The clock is injected so tests need not sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from arks_router.settings import RoutingSettings


@dataclass
class _Record:
    consecutive_failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0


class Outliers:
    def __init__(
        self, settings: RoutingSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._records: dict[str, _Record] = {}

    def ejected(self, url: str) -> bool:
        record = self._records.get(url)
        return record is not None and record.ejected_until > self._clock()

    def success(self, url: str) -> None:
        record = self._records.get(url)
        if record is None:
            return
        record.consecutive_failures = 0
        if self._clock() > record.ejected_until + self._settings.max_eject_seconds:
            del self._records[url]

    def failure(self, url: str) -> bool:
        """Count a failure; True when it ejected the backend just now."""
        record = self._records.setdefault(url, _Record())
        now = self._clock()
        if record.ejected_until > now:
            return False  # already out (a request that was in flight when it failed)
        record.consecutive_failures += 1
        if record.consecutive_failures < self._settings.eject_after_failures:
            return False
        if now > record.ejected_until + self._settings.max_eject_seconds:
            record.ejections = 0
        record.ejections += 1
        length = min(
            self._settings.eject_seconds * record.ejections, self._settings.max_eject_seconds
        )
        record.ejected_until = now + length
        record.consecutive_failures = 0
        return True
