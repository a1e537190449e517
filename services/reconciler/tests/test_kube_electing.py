"""Leader election on a Lease: `LeaseElector` with the real kubernetes-asyncio client
against the dev cluster's API server (real HTTP)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client

from arks_common import messaging
from arks_common.kubeapi import KubeApi
from arks_devcluster import FakeKubeApi, serve
from arks_reconciler.kube.electing import (
    LeaseElector,
    format_microtime,
    identity,
    lease_namespace,
    parse_time,
)
from arks_reconciler.leading import LeadershipLost
from arks_reconciler.reconciling import Reconciler
from arks_reconciler.settings import LeaseSettings
from arks_reconciler.testing import make_settings
from services.reconciler.tests.conftest import watched_local_platform

NS, NAME = "arks-system", "arks-reconciler"
MICROTIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
FAST = LeaseSettings(duration=2.0, renew_deadline=1.5, retry_period=0.1)
"""Short lease (2 s), frequent attempts."""
LONG = LeaseSettings(duration=60.0, renew_deadline=1.5, retry_period=0.1)
"""A lease no test outlives: taking it over needs a release."""


@pytest.fixture
async def kube() -> AsyncIterator[tuple[FakeKubeApi, client.ApiClient]]:
    async with serve() as (api, url), client.ApiClient(client.Configuration(host=url)) as c:
        yield api, c


def elector(c: client.ApiClient, who: str, settings: LeaseSettings = FAST) -> LeaseElector:
    return LeaseElector(KubeApi(c), settings, namespace=NS, identity=who)


@contextlib.asynccontextmanager
async def campaigning(candidate: LeaseElector) -> AsyncIterator[tuple[asyncio.Event, Any]]:
    """Run `candidate` until the block ends (then stop it, which releases the lease)."""
    stop = asyncio.Event()
    task = asyncio.create_task(candidate.run(stop), name=f"elector:{candidate.identity}")
    try:
        yield stop, task
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


def lease(api: FakeKubeApi) -> dict[str, Any]:
    found = api.get("coordination.k8s.io/v1", "leases", NS, NAME)
    assert found is not None
    spec: dict[str, Any] = found["spec"]
    return spec


async def patch_lease(c: client.ApiClient, patch: dict[str, Any]) -> None:
    """Write the Lease as someone else would (a JSON merge patch)."""
    await client.CustomObjectsApi(c).patch_namespaced_custom_object(  # type: ignore[call-arg]
        "coordination.k8s.io",
        "v1",
        NS,
        "leases",
        NAME,
        patch,
        _content_type="application/merge-patch+json",
    )


async def eventually(check: Callable[[], bool | Awaitable[bool]], what: str = "") -> None:
    for _ in range(200):
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def leads(candidate: LeaseElector) -> None:
    await asyncio.wait_for(candidate.leading.wait(), 15)


async def test_one_candidate_creates_the_lease_renews_it_and_releases_it_on_stop(kube):
    api, c = kube
    alone = elector(c, "alone")
    assert (alone.is_leader, alone.holder) == (False, None)
    async with campaigning(alone) as (stop, task):
        await leads(alone)
        assert alone.is_leader
        assert alone.holder == "alone"
        assert alone.transitions == 0
        spec = lease(api)
        assert spec["holderIdentity"] == "alone"
        assert spec["leaseDurationSeconds"] == 2
        assert spec["leaseTransitions"] == 0
        assert MICROTIME.match(spec["acquireTime"]), spec["acquireTime"]
        assert MICROTIME.match(spec["renewTime"]), spec["renewTime"]
        acquired = parse_time(spec["acquireTime"])
        assert acquired is not None
        assert abs(datetime.now(UTC) - acquired) < timedelta(seconds=30)

        first = spec["renewTime"]
        await eventually(lambda: lease(api)["renewTime"] != first, "a renewal")
        assert lease(api)["acquireTime"] == spec["acquireTime"]
        stop.set()
        await asyncio.wait_for(task, 10)
    released = lease(api)
    assert released["holderIdentity"] in ("", None)
    assert released["leaseDurationSeconds"] == 1
    assert MICROTIME.match(released["renewTime"])
    assert not alone.leading.is_set()
    assert not alone.lost.is_set(), "a release on stop is no lost lead"
    assert not alone.is_leader


async def first_to_lead(*candidates: LeaseElector) -> LeaseElector:
    waiters = {asyncio.ensure_future(c.leading.wait()): c for c in candidates}
    try:
        done, _ = await asyncio.wait(waiters, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    assert done, "nobody leads"
    return waiters[done.pop()]


async def test_of_two_candidates_one_leads_and_the_other_takes_over_a_dead_leader(kube):
    api, c = kube
    a, b = elector(c, "a"), elector(c, "b")
    async with campaigning(a) as (_, task_a), campaigning(b) as (_, task_b):
        leader = await first_to_lead(a, b)
        standby, leader_task = (b, task_a) if leader is a else (a, task_b)
        for _ in range(10):  # several attempts of the standby, none wins
            await asyncio.sleep(FAST.retry_period)
            assert not standby.leading.is_set()
            assert lease(api)["holderIdentity"] == leader.identity
        assert standby.holder == leader.identity
        assert lease(api)["leaseTransitions"] == 0

        leader_task.cancel()  # the leader dies: no more renewals, no release
        await leads(standby)
        assert lease(api)["holderIdentity"] == standby.identity
        assert lease(api)["leaseTransitions"] == 1
        assert standby.transitions == 1
        assert standby.is_leader


async def test_a_stopped_leader_releases_and_a_standby_takes_over_at_once(kube):
    """The lease lasts a minute: only a release lets the standby in within the test."""
    api, c = kube
    a, b = elector(c, "a", LONG), elector(c, "b", LONG)
    async with campaigning(a) as (stop_a, task_a), campaigning(b) as (stop_b, task_b):
        leader = await first_to_lead(a, b)
        standby, stop, task = (b, stop_a, task_a) if leader is a else (a, stop_b, task_b)
        assert lease(api)["leaseDurationSeconds"] == 60
        stop.set()
        await asyncio.wait_for(task, 10)
        await leads(standby)
        assert lease(api)["holderIdentity"] == standby.identity
        assert lease(api)["leaseTransitions"] == 1
        assert not leader.lost.is_set()
        await asyncio.sleep(5 * LONG.retry_period)
        assert not leader.leading.is_set(), "a released leader does not campaign again"


async def test_an_expired_lease_of_a_dead_holder_is_taken_over(kube, caplog):
    api, c = kube
    api.create(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": NAME, "namespace": NS},
            "spec": {
                "holderIdentity": "dead",
                "leaseDurationSeconds": 15,
                # written by someone else: no fraction, an offset
                "acquireTime": "2026-01-01T09:00:00+01:00",
                "renewTime": "2026-01-01T09:00:00+01:00",
                "leaseTransitions": 3,
            },
        }
    )
    heir = elector(c, "heir")
    async with campaigning(heir):
        await leads(heir)
        spec = lease(api)
        assert spec["holderIdentity"] == "heir"
        assert spec["leaseTransitions"] == 4
        assert MICROTIME.match(spec["acquireTime"])
        assert MICROTIME.match(spec["renewTime"])
        assert heir.transitions == 4


async def test_a_live_holder_is_respected_and_named(kube, caplog):
    api, c = kube
    api.create(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": NAME, "namespace": NS},
            "spec": {
                "holderIdentity": "elsewhere",
                "leaseDurationSeconds": 60,
                "renewTime": format_microtime(datetime.now(UTC)),
                "leaseTransitions": 7,
            },
        }
    )
    standby = elector(c, "standby")
    with caplog.at_level(logging.INFO, logger="arks_reconciler.kube.electing"):
        async with campaigning(standby):
            await eventually(lambda: standby.holder == "elsewhere", "the holder read")
            await asyncio.sleep(5 * FAST.retry_period)
            assert not standby.leading.is_set()
            assert standby.transitions == 7
    assert lease(api)["holderIdentity"] == "elsewhere"
    named = [r.getMessage() for r in caplog.records if "elsewhere holds" in r.getMessage()]
    assert len(named) == 1, "who holds it is logged once, not at every attempt"


async def test_another_holder_overwriting_the_lease_ends_the_lead(kube):
    api, c = kube
    leader = elector(c, "leader")
    async with campaigning(leader) as (_, task):
        await leads(leader)
        await patch_lease(
            c,
            {
                "spec": {
                    "holderIdentity": "usurper",
                    "renewTime": format_microtime(datetime.now(UTC)),
                }
            },
        )
        await asyncio.wait_for(leader.lost.wait(), 10)
        assert not leader.leading.is_set()
        assert not leader.is_leader
        await asyncio.wait_for(task, 10)  # the campaign is over for this process
    assert lease(api)["holderIdentity"] == "usurper", "a lost leader releases nothing"
    stop = asyncio.Event()
    await asyncio.wait_for(leader.run(stop), 5)  # never campaigns again
    assert not leader.leading.is_set()


async def test_a_lease_deleted_under_the_leader_is_created_again(kube):
    api, c = kube
    leader = elector(c, "leader")
    async with campaigning(leader):
        await leads(leader)
        await client.CustomObjectsApi(c).delete_namespaced_custom_object(
            "coordination.k8s.io", "v1", NS, "leases", NAME
        )
        await eventually(
            lambda: api.get("coordination.k8s.io/v1", "leases", NS, NAME) is not None,
            "the Lease created again",
        )
        assert lease(api)["holderIdentity"] == "leader"
        assert leader.is_leader


async def test_a_short_outage_is_survived_a_long_one_ends_the_lead(kube):
    api, c = kube
    leader = elector(c, "leader")
    async with campaigning(leader):
        await leads(leader)
        sent = len(api.requests)
        api.fail_next(503, count=2)
        await eventually(lambda: len(api.requests) >= sent + 3, "the injected failures answered")
        renewed = lease(api)["renewTime"]
        await eventually(lambda: lease(api)["renewTime"] != renewed, "a renewal after the outage")
        assert leader.is_leader
        assert not leader.lost.is_set()

        api.fail_next(503, count=100_000)  # the API is away for good
        await asyncio.wait_for(leader.lost.wait(), 10)
        assert not leader.leading.is_set()


async def test_refusals_are_logged_with_the_rbac_to_grant_and_tried_again(kube, caplog):
    api, c = kube
    api.fail_next(403, count=5)
    candidate = elector(c, "candidate")
    with caplog.at_level(logging.INFO, logger="arks_reconciler.kube.electing"):
        async with campaigning(candidate):
            await leads(candidate)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, "logged once, not at every attempt"
    message = errors[0].getMessage()
    assert "get, create and update on leases" in message
    assert f"namespace {NS}" in message


def test_times_are_written_as_utc_microtime_and_read_tolerantly() -> None:
    at = datetime(2026, 12, 5, 13, 0, tzinfo=UTC) + timedelta(microseconds=5)
    assert format_microtime(at) == "2026-12-05T13:00:00.000005Z"
    local = at.astimezone(__import__("datetime").timezone(timedelta(hours=2)))
    assert format_microtime(local) == "2026-12-05T13:00:00.000005Z"
    expected = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    for text in (
        "2026-12-05T12:00:00Z",
        "2026-12-05T12:00:00.000000Z",
        "2026-12-05T12:00:00.000000000Z",
        "2026-12-05T14:00:00+02:00",
        "2026-12-05T14:00:00.0+02:00",
        "2026-12-05T12:00:00",
    ):
        assert parse_time(text) == expected, text
    assert parse_time("") is None
    assert parse_time(None) is None
    assert parse_time("yesterday") is None


def test_namespace_and_identity_defaults(tmp_path: Path, monkeypatch) -> None:
    settings = LeaseSettings()
    missing = tmp_path / "none"
    assert lease_namespace(LeaseSettings(namespace="ops"), environ={"POD_NAMESPACE": "x"}) == "ops"
    assert lease_namespace(settings, environ={"POD_NAMESPACE": "pods"}) == "pods"
    account = tmp_path / "namespace"
    account.write_text("from-sa\n")
    assert lease_namespace(settings, environ={}, service_account_file=account) == "from-sa"
    assert lease_namespace(settings, environ={}, service_account_file=missing) == "default"
    assert identity(LeaseSettings(identity="me")) == "me"
    monkeypatch.setattr("socket.gethostname", lambda: "host-1")
    assert re.fullmatch(r"host-1_\d+", identity(settings))


async def test_the_reconciler_acts_only_while_its_elector_leads(
    kube, nats_server: Any, data_dir: Path, bus: messaging.Bus
) -> None:
    """A live holder keeps the reconciler a candidate (no watch); once that holder stops
    renewing the reconciler leads and syncs; another holder taking the Lease stops it
    with LeadershipLost (exit 75)."""
    api, c = kube
    api.create(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": NAME, "namespace": NS},
            "spec": {
                "holderIdentity": "elsewhere",
                "leaseDurationSeconds": 3,
                "renewTime": format_microtime(datetime.now(UTC)),
            },
        }
    )
    settings = make_settings(nats_server.url, data_dir, stop_on_exit=True)
    async with httpx.AsyncClient() as http:
        candidate = elector(c, "reconciler-0")
        platform, watched = watched_local_platform(settings, bus, http, candidate)
        reconciler = Reconciler(platform, bus, settings.queue)
        stop = asyncio.Event()
        task = asyncio.create_task(reconciler.run(stop))
        try:
            await eventually(lambda: candidate.holder == "elsewhere", "the holder read")
            assert not watched, "a candidate does not watch"
            await asyncio.wait_for(reconciler.synced.wait(), 15)
            assert candidate.is_leader
            assert watched
            await patch_lease(c, {"spec": {"holderIdentity": "usurper"}})
            with pytest.raises(ExceptionGroup) as stopped:
                await asyncio.wait_for(task, 10)
            assert stopped.group_contains(LeadershipLost)
        finally:
            stop.set()
            if not task.done():
                await asyncio.wait_for(task, 10)
