"""Routing strategies are pure: scores from candidates and the request alone."""

from __future__ import annotations

import collections
import random

from arks_common.events import EngineLoadSnapshot, ReplicaLoad, RouteBackend, RouteTable
from arks_router.routing import registry
from arks_router.routing.base import Candidate
from arks_router.routing.least_load import LeastLoad
from arks_router.routing.outliers import Outliers
from arks_router.routing.prefix_affinity import PrefixAffinity, prefix_blocks
from arks_router.routing.selecting import Fleet
from arks_router.routing.session_affinity import SessionAffinity
from arks_router.routing.weighted import Weighted
from arks_router.settings import RoutingSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def table(*weights: int, strategy: str | None = None) -> RouteTable:
    return RouteTable(
        namespace="default",
        endpoint="m",
        strategy=strategy,
        backends=[
            RouteBackend(name=f"b{i}", url=f"http://10.0.0.{i}:8000/", weight=w)
            for i, w in enumerate(weights)
        ],
    )


def test_weighted_splits_traffic_by_weight_and_never_uses_weight_zero():
    fleet = Fleet(RoutingSettings(), rng=random.Random(7))
    picks = collections.Counter(
        fleet.rank(table(60, 30, 10, 0), Weighted())[0].name for _ in range(20_000)
    )
    assert picks["b3"] == 0
    assert abs(picks["b0"] / 20_000 - 0.6) < 0.02
    assert abs(picks["b1"] / 20_000 - 0.3) < 0.02
    assert abs(picks["b2"] / 20_000 - 0.1) < 0.02


def test_least_load_prefers_idle_engines_by_own_and_reported_load():
    clock = Clock()
    fleet = Fleet(RoutingSettings(load_stale_seconds=5), clock=clock, rng=random.Random(1))
    routes = table(1, 1, 1)
    for _ in range(3):
        fleet.acquire("http://10.0.0.0:8000")
    fleet.observe_load(
        EngineLoadSnapshot(
            id="s1",
            namespace="default",
            application="a",
            replicas=[
                ReplicaLoad(replica="r1", url="http://10.0.0.1:8000", running=8, waiting=4),
                ReplicaLoad(replica="r2", url="http://10.0.0.2:8000", running=1),
            ],
        )
    )
    assert [c.name for c in fleet.rank(routes, LeastLoad())] == ["b2", "b0", "b1"]
    clock.now += 10  # the snapshot went stale: only our own in-flight counts
    assert [c.name for c in fleet.rank(routes, LeastLoad())][-1] == "b0"


def test_prefix_affinity_sticks_to_the_backend_that_has_the_prefix_until_overloaded():
    settings = RoutingSettings(prefix_block_chars=16, bounded_load_factor=1.25)
    fleet = Fleet(settings, rng=random.Random(3))
    routes = table(1, 1, 1, 1)
    shared = "You are a helpful assistant. " * 4
    blocks = prefix_blocks(shared + "question one", 16, 64)
    first = fleet.rank(routes, PrefixAffinity(), prefix_blocks=blocks)[0]
    fleet.remember_prefix(blocks, first.url)
    # Another question behind the same system prompt goes to the same engine...
    other = prefix_blocks(shared + "a different question", 16, 64)
    assert fleet.rank(routes, PrefixAffinity(), prefix_blocks=other)[0].url == first.url
    # ...and every router agrees on a prefix nobody has seen (rendezvous hashing).
    unseen = prefix_blocks("Brand new system prompt " * 3, 16, 64)
    picks = {
        Fleet(settings).rank(routes, PrefixAffinity(), prefix_blocks=unseen)[0].url
        for _ in range(5)
    }
    assert len(picks) == 1
    # Bounded load: a hot engine spills over to the least loaded one.
    for _ in range(10):
        fleet.acquire(first.url)
    spilled = fleet.rank(routes, PrefixAffinity(), prefix_blocks=other)[0]
    assert spilled.url != first.url
    assert spilled.in_flight == 0
    # The spill does not move the group: its home stays, and once the burst is over the
    # group's next request goes home (a moved home would be a cold prefill there).
    homes = {c.url for c in fleet.candidates(routes)}
    fleet.remember_prefix(other, spilled.url, homes=homes)
    for _ in range(10):
        fleet.release(first.url)
    third = prefix_blocks(shared + "a third question", 16, 64)
    assert fleet.rank(routes, PrefixAffinity(), prefix_blocks=third)[0].url == first.url
    # A home that is gone (not among the backends any more) gives its groups away.
    fleet.remember_prefix(other, spilled.url, homes=homes - {first.url})
    assert fleet.rank(routes, PrefixAffinity(), prefix_blocks=other)[0].url == spilled.url


def test_session_affinity_is_stable_and_moves_only_the_sessions_of_a_lost_backend():
    fleet = Fleet(RoutingSettings(), rng=random.Random(5))
    four = table(1, 1, 1, 1)
    before = {
        s: fleet.rank(four, SessionAffinity(), session=s)[0].name for s in map(str, range(400))
    }
    again = {
        s: fleet.rank(four, SessionAffinity(), session=s)[0].name for s in map(str, range(400))
    }
    assert before == again
    assert len(set(before.values())) == 4
    three = RouteTable(namespace="default", endpoint="m", backends=four.backends[:3])
    after = {
        s: fleet.rank(three, SessionAffinity(), session=s)[0].name for s in map(str, range(400))
    }
    moved = {s for s in before if before[s] != after[s]}
    assert moved == {s for s in before if before[s] == "b3"}


def test_outliers_eject_after_consecutive_failures_for_growing_periods():
    clock = Clock()
    settings = RoutingSettings(eject_after_failures=3, eject_seconds=10, max_eject_seconds=25)
    outliers = Outliers(settings, clock)
    url = "http://x"
    assert not outliers.failure(url)
    outliers.success(url)  # a success resets the streak
    assert not outliers.failure(url)
    assert not outliers.failure(url)
    assert outliers.failure(url)
    assert outliers.ejected(url)
    clock.now += 10.5
    assert not outliers.ejected(url)
    for _ in range(2):
        outliers.failure(url)
    assert outliers.failure(url)
    clock.now += 15
    assert outliers.ejected(url)  # second ejection lasts 20 s
    clock.now += 6
    assert not outliers.ejected(url)


def test_ejected_backends_are_skipped_unless_all_are_ejected():
    clock = Clock()
    fleet = Fleet(RoutingSettings(eject_after_failures=1), clock=clock)
    routes = table(1, 1)
    fleet.outliers.failure("http://10.0.0.0:8000")
    assert [c.name for c in fleet.rank(routes, LeastLoad())] == ["b1"]
    fleet.outliers.failure("http://10.0.0.1:8000")
    assert len(fleet.rank(routes, LeastLoad())) == 2


def test_strategy_resolution():
    assert registry.resolve(None, "auto", [1, 1]).name == "leastLoad"
    assert registry.resolve(None, "auto", [90, 10]).name == "weighted"
    assert registry.resolve("prefixAffinity", "auto", [1]).name == "prefixAffinity"
    assert registry.resolve("session_affinity", "auto", [1]).name == "sessionAffinity"
    assert registry.resolve("fancyNew", "weighted", [1, 1]).name == "weighted"


def test_candidates_carry_load_scores():
    busy = Candidate(
        name="a",
        url="u",
        weight=1,
        in_flight=2,
        load=ReplicaLoad(replica="r", url="u", running=5, waiting=3, kv_cache_usage=0.5),
    )
    assert busy.load_score == 8 + 3 + 2.0


def apps_table(*apps: tuple[str, int, int], strategy: str | None = None) -> RouteTable:
    """(application, replicas, weight) each: one backend per replica, as published."""
    backends = [
        RouteBackend(
            name=app,
            url=f"http://10.1.{a}.{r}:8000",
            weight=weight,
            application=app,
            replica=f"{app}-{r}",
        )
        for a, (app, replicas, weight) in enumerate(apps)
        for r in range(replicas)
    ]
    return RouteTable(namespace="default", endpoint="m", strategy=strategy, backends=backends)


def shares(picks: collections.Counter[str]) -> dict[str, float]:
    total = sum(picks.values())
    return {name: count / total for name, count in picks.items()}


def test_weighted_weights_apply_per_application_not_per_replica():
    fleet = Fleet(RoutingSettings(), rng=random.Random(11))
    equal = apps_table(("big", 3, 1), ("small", 1, 1))
    picks = collections.Counter(fleet.rank(equal, Weighted())[0].name for _ in range(20_000))
    assert abs(shares(picks)["big"] - 0.5) < 0.02
    replicas = collections.Counter(fleet.rank(equal, Weighted())[0].url for _ in range(30_000))
    big = [n for url, n in replicas.items() if url.startswith("http://10.1.0.")]
    assert len(big) == 3
    assert all(abs(n / 30_000 - 1 / 6) < 0.02 for n in big)
    split = apps_table(("one", 1, 3), ("four", 4, 1))
    picks = collections.Counter(fleet.rank(split, Weighted())[0].name for _ in range(20_000))
    assert abs(shares(picks)["one"] - 0.75) < 0.02


def test_weighted_retry_candidate_is_the_same_applications_next_replica_first():
    fleet = Fleet(RoutingSettings(), rng=random.Random(5))
    ranked = fleet.rank(apps_table(("big", 3, 1), ("small", 1, 1)), Weighted())
    assert len(ranked) == 4
    first = ranked[0].name
    assert [c.name for c in ranked].count(first) == (3 if first == "big" else 1)
    # an application's replicas come together: the second is the next replica of the same
    # application when it has one
    if first == "big":
        assert [c.name for c in ranked[:3]] == ["big"] * 3


def test_least_load_weights_apply_per_application():
    """Deterministic counting: requests stay open, so least load equalises the work per
    unit of weight across applications, not across replicas."""
    for apps, expected in (
        ((("big", 3, 1), ("small", 1, 1)), {"big": 0.5, "small": 0.5}),
        ((("big", 3, 1), ("small", 1, 3)), {"big": 0.25, "small": 0.75}),
        ((("a", 1, 3), ("b", 4, 1)), {"a": 0.75, "b": 0.25}),
    ):
        fleet = Fleet(RoutingSettings(), rng=random.Random(2))
        routes = apps_table(*apps)
        picks: collections.Counter[str] = collections.Counter()
        for _ in range(400):
            best = fleet.rank(routes, LeastLoad())[0]
            fleet.acquire(best.url)
            picks[best.name] += 1
        got = shares(picks)
        assert all(abs(got[name] - share) <= 0.01 for name, share in expected.items()), got
    # within an application the work spreads evenly over its replicas
    per_replica = [fleet.in_flight(c.url) for c in fleet.candidates(routes) if c.name == "b"]
    assert max(per_replica) - min(per_replica) <= 1


def test_session_and_prefix_affinity_split_sessions_and_prefixes_per_application():
    fleet = Fleet(RoutingSettings(), rng=random.Random(4))
    routes = apps_table(("big", 3, 1), ("small", 1, 1))
    sessions = collections.Counter(
        fleet.rank(routes, SessionAffinity(), session=f"s{i}")[0].name for i in range(8_000)
    )
    assert abs(shares(sessions)["big"] - 0.5) < 0.03
    weighted = apps_table(("big", 3, 1), ("small", 1, 3))
    sessions = collections.Counter(
        fleet.rank(weighted, SessionAffinity(), session=f"s{i}")[0].name for i in range(8_000)
    )
    assert abs(shares(sessions)["small"] - 0.75) < 0.03
    # a session stays on its replica
    again = {fleet.rank(routes, SessionAffinity(), session="s42")[0].url for _ in range(20)}
    assert len(again) == 1
    prefixes = collections.Counter(
        fleet.rank(routes, PrefixAffinity(), prefix_blocks=prefix_blocks(f"{i:08d}", 8, 4))[0].name
        for i in range(8_000)
    )
    assert abs(shares(prefixes)["big"] - 0.5) < 0.03
    # a prefix held by a replica stays there, whatever the split
    blocks = prefix_blocks("system prompt!!" * 2, 8, 4)
    target = next(c for c in fleet.candidates(routes) if c.name == "big")
    fleet.remember_prefix(blocks, target.url)
    assert fleet.rank(routes, PrefixAffinity(), prefix_blocks=blocks)[0].url == target.url
