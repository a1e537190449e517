"""The quota specs (limits, budget, prices, period) the reconciler publishes to KV.

Fed by `Bus.watch(arks-quotas)`: a snapshot replaces the view, a change updates one
quota. Every quota whose spec appeared, changed or vanished is marked dirty so its
exhaustion state is re-evaluated (a raised limit un-exhausts a quota). A value that does
not decode is logged and ignored, keeping the previous spec.
"""

from __future__ import annotations

import asyncio
import logging

from arks_accountant.pricing import PriceList
from arks_common import events, subjects
from arks_common.errors import PermanentError
from arks_common.messaging import Bus, KvSnapshot, KvUpdate

log = logging.getLogger(__name__)

QuotaRef = tuple[str, str]


class QuotaSpecs:
    """The latest QuotaSpec of every quota, by (namespace, name)."""

    def __init__(self) -> None:
        self._specs: dict[QuotaRef, events.QuotaSpec] = {}
        self._prices: dict[QuotaRef, tuple[events.QuotaSpec, PriceList]] = {}
        self.loaded = asyncio.Event()
        self.dirty: set[QuotaRef] = set()
        self.changed = asyncio.Event()

    def get(self, namespace: str, name: str) -> events.QuotaSpec | None:
        return self._specs.get((namespace, name))

    def prices(self, namespace: str, name: str) -> PriceList | None:
        """The spec's price list, built once per spec."""
        spec = self._specs.get((namespace, name))
        if spec is None:
            return None
        cached = self._prices.get((namespace, name))
        if cached is None or cached[0] is not spec:
            cached = (spec, PriceList.of(spec))
            self._prices[(namespace, name)] = cached
        return cached[1]

    def all(self) -> list[events.QuotaSpec]:
        return list(self._specs.values())

    def take_dirty(self) -> set[QuotaRef]:
        dirty, self.dirty = self.dirty, set()
        self.changed.clear()
        return dirty

    def apply(self, update: KvUpdate) -> None:
        if isinstance(update, KvSnapshot):
            fresh: dict[QuotaRef, events.QuotaSpec] = {}
            for key, value in update.entries.items():
                spec = self._decode(key, value)
                if spec is not None:
                    fresh[subjects.split_namespaced_key(key)] = spec
                elif (ref := subjects.split_namespaced_key(key)) in self._specs:
                    fresh[ref] = self._specs[ref]
            changed = {
                r for r in fresh.keys() | self._specs.keys() if fresh.get(r) != self._specs.get(r)
            }
            self._specs = fresh
            self.loaded.set()
        else:
            ref = subjects.split_namespaced_key(update.key)
            if update.value is None:
                changed = {ref} if self._specs.pop(ref, None) is not None else set()
            else:
                spec = self._decode(update.key, update.value)
                if spec is None or spec == self._specs.get(ref):
                    return
                self._specs[ref] = spec
                changed = {ref}
        if changed:
            self.dirty |= changed
            self.changed.set()

    @staticmethod
    def _decode(key: str, value: bytes) -> events.QuotaSpec | None:
        try:
            return events.decode_as(events.QuotaSpec, value)
        except PermanentError as exc:
            log.error("ignoring quota spec %s: %s", key, exc.message)
            return None

    async def follow(self, bus: Bus, stop: asyncio.Event) -> None:
        """Keep the view current until `stop` is set."""
        updates = bus.watch(subjects.QUOTAS_BUCKET, stop=stop)
        try:
            async for update in updates:
                self.apply(update)
        finally:
            await updates.aclose()
