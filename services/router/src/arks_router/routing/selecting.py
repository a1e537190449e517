"""The router's view of its backends, and the ranking of candidates for one request.

`Fleet` holds what routing needs besides the route table: this process's in-flight
count per backend, the engines' latest load snapshots (stale ones are ignored), the
outlier detector and the prefix index. `rank()` turns a route table into candidates
(weight-0 backends get no traffic), drops ejected and not-ready backends (unless that
would drop them all: then a failing backend is still better than a certain 503),
groups them by application (`RouteBackend.application`; a backend without one is a
group of its own), lets the strategy order the groups by their weights and then the
replicas within each group, and returns them best first: the best group's replicas,
then the next group's. The proxy tries the first and retries the second. Weights thus
split traffic per application, whatever each application's replica count.

Everything here runs on the event loop thread without awaiting, so it needs no lock.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from typing import TypeVar

from arks_common.events import EngineLoadSnapshot, ReplicaLoad, RouteTable
from arks_router.routing.base import Candidate, Group, Polarity, RoutingRequest, Strategy
from arks_router.routing.outliers import Outliers
from arks_router.settings import RoutingSettings

T = TypeVar("T")


def normalize_url(url: str) -> str:
    return url.rstrip("/")


class Fleet:
    def __init__(
        self,
        settings: RoutingSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self.rng = rng or random.Random()
        self.outliers = Outliers(settings, clock)
        self._in_flight: dict[str, int] = {}
        self._loads: dict[str, tuple[ReplicaLoad, float]] = {}
        self._prefix_index: OrderedDict[bytes, str] = OrderedDict()

    # ------------------------------------------------------------------ observations
    def observe_load(self, snapshot: EngineLoadSnapshot) -> None:
        now = self._clock()
        for replica in snapshot.replicas:
            self._loads[normalize_url(replica.url)] = (replica, now)

    def load_of(self, url: str) -> ReplicaLoad | None:
        entry = self._loads.get(url)
        if entry is None:
            return None
        load, seen = entry
        if self._clock() - seen > self._settings.load_stale_seconds:
            return None
        return load

    def acquire(self, url: str) -> None:
        self._in_flight[url] = self._in_flight.get(url, 0) + 1

    def release(self, url: str) -> None:
        left = self._in_flight.get(url, 0) - 1
        if left > 0:
            self._in_flight[url] = left
        else:
            self._in_flight.pop(url, None)

    def in_flight(self, url: str) -> int:
        return self._in_flight.get(url, 0)

    def remember_prefix(
        self, blocks: Sequence[bytes], url: str, *, homes: Collection[str] | None = None
    ) -> None:
        """`url` served a prompt of `blocks`. A block whose home is another backend that
        is still one of `homes` (the backends the request could have gone to, not
        ejected) keeps that home: a request spilled over by the bounded-load guard does
        not move its whole prompt group to a cold replica, and the group's next request
        goes home again once the burst is over. `homes=None`: `url` becomes the home."""
        index = self._prefix_index
        for block in blocks:
            home = index.get(block)
            if home is None or homes is None or home not in homes or self.outliers.ejected(home):
                index[block] = url
            index.move_to_end(block)
        while len(index) > self._settings.prefix_index_size:
            index.popitem(last=False)

    # ------------------------------------------------------------------ ranking
    def candidates(self, table: RouteTable) -> list[Candidate]:
        every: list[Candidate] = []
        usable: list[Candidate] = []
        for backend in table.backends:
            if backend.weight <= 0:
                continue  # weight 0 means no traffic (Gateway API semantics)
            url = normalize_url(backend.url)
            load = self.load_of(url)
            candidate = Candidate(
                name=backend.name,
                url=url,
                weight=backend.weight,
                in_flight=self._in_flight.get(url, 0),
                load=load,
                group=backend.application or "",
                replica=backend.replica or "",
            )
            every.append(candidate)
            if not self.outliers.ejected(url) and (load is None or load.ready):
                usable.append(candidate)
        return usable or every

    def rank(
        self,
        table: RouteTable,
        strategy: Strategy,
        *,
        prefix_blocks: Sequence[bytes] = (),
        session: str | None = None,
    ) -> list[Candidate]:
        candidates = self.candidates(table)
        if len(candidates) <= 1:
            return candidates
        request = RoutingRequest(
            prefix_blocks=prefix_blocks,
            session=session,
            rng=self.rng,
            prefix_index=self._prefix_index,
            bounded_load_factor=self._settings.bounded_load_factor,
        )
        groups = _groups(candidates)
        if len(groups) == 1:
            return _ordered(candidates, strategy.score(candidates, request), strategy)
        ranked: list[Candidate] = []
        for group in _ordered(groups, strategy.score_groups(groups, request), strategy):
            members = group.candidates
            if len(members) > 1:
                members = _ordered(members, strategy.score(members, request), strategy)
            ranked += members
        return ranked


def _groups(candidates: Sequence[Candidate]) -> list[Group]:
    """Candidates by application in first-seen order; a group's weight is the largest
    of its backends' (the reconciler gives every replica its application's weight)."""
    members: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        members.setdefault(candidate.group_key, []).append(candidate)
    return [
        Group(key=key, weight=max(c.weight for c in group), candidates=group)
        for key, group in members.items()
    ]


def _ordered(items: Sequence[T], scores: Sequence[float], strategy: Strategy) -> list[T]:
    order = sorted(
        range(len(items)), key=scores.__getitem__, reverse=strategy.polarity is Polarity.HIGHER
    )
    return [items[i] for i in order]
