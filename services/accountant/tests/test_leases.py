"""Ledger step 5 against a real Valkey and NATS: a dead router's reservations go back.

Reservations are written as the router's admission script writes them (the ledger's
layout: hash with `router` and `at`, expiry index, the quota's set of routers), leases
as the router's lease task writes them (`arks:routers`, scored by expiry on Valkey's
clock).
"""

from __future__ import annotations

from arks_accountant.testing import (
    make_settings,
    publish_usage,
    put_spec,
    running_accountant,
    used,
    wait_for,
)
from arks_common import ledger
from arks_common.testing.builders import make_quota_spec, make_usage_event

NS, QUOTA = "default", "basic-quota"
FAR = 4_000_000_000  # reservation expiry: the expiry sweep must not be what releases them


async def _reserve(redis, request_id: str, router: str, at: int, total: int, prompt: int) -> None:
    await redis.hset(
        ledger.reservation_key(NS, QUOTA, request_id),
        mapping={
            "period": "lifetime",
            "total": total,
            "prompt": prompt,
            "expires": FAR,
            "router": router,
            "at": at,
        },
    )
    await redis.zadd(ledger.reservation_index_key(NS, QUOTA), {request_id: FAR})
    await redis.sadd(ledger.reservation_routers_key(NS, QUOTA), router)
    await redis.incrby(ledger.reserved_key(NS, QUOTA, "lifetime", "total"), total)
    await redis.incrby(ledger.reserved_key(NS, QUOTA, "lifetime", "prompt"), prompt)


async def _reserved(redis, kind: str = "total") -> int:
    return int(await redis.get(ledger.reserved_key(NS, QUOTA, "lifetime", kind)) or 0)


async def test_reservations_of_a_router_whose_lease_lapsed_are_released_once(
    bus, redis, nats_server, valkey_server
):
    await put_spec(bus, make_quota_spec())
    seconds, _ = await redis.time()
    now_ms = seconds * 1000
    old = seconds - 2 * ledger.ROUTER_LEASE_SECONDS
    await redis.zadd(ledger.ROUTERS_KEY, {"dead": now_ms - 1000, "live": now_ms + 60_000})
    late = make_usage_event(prompt_tokens=3, completion_tokens=4)
    await _reserve(redis, late.id, "dead", old, total=1000, prompt=100)
    await _reserve(redis, "req-dead-2", "dead", old, total=500, prompt=50)
    await _reserve(redis, "req-live", "live", old, total=30, prompt=3)
    # never registered (its first lease write may still be on its way): kept while young
    await _reserve(redis, "req-new", "starting", seconds, total=20, prompt=2)
    # never registered and older than a lease: nobody holds it any more
    await _reserve(redis, "req-orphan", "vanished", old, total=7, prompt=1)

    settings = make_settings(nats_server.url, valkey_server.url)
    async with running_accountant(settings) as acct:
        await wait_for(
            lambda: acct.metric("arks_accountant_reservations_lease_released_total") == 3,
            what="the lapsed routers' reservations released",
        )
        assert await _reserved(redis) == 30 + 20
        assert await _reserved(redis, "prompt") == 3 + 2
        for gone in (late.id, "req-dead-2", "req-orphan"):
            assert not await redis.exists(ledger.reservation_key(NS, QUOTA, gone))
        index = await redis.zrange(ledger.reservation_index_key(NS, QUOTA), 0, -1)
        assert sorted(index) == [b"req-live", b"req-new"]
        routers = await redis.smembers(ledger.reservation_routers_key(NS, QUOTA))
        assert routers == {b"live", b"starting"}  # nothing of the others is left here

        # the dead router's usage arrives after all (its journal replayed by the next
        # router on its slot): applied once, and the reservation is not released twice
        await publish_usage(bus, late)

        async def applied() -> bool:
            return (await used(redis, NS, QUOTA))["total"] == 7

        await wait_for(applied, what="late usage applied")
        assert await _reserved(redis) == 30 + 20
        assert acct.metric("arks_accountant_events_total", result="applied") == 1
        assert acct.metric("arks_accountant_reservations_swept_total") == 0
        assert acct.metric("arks_accountant_reservations_lease_released_total") == 3


async def test_a_lease_given_up_releases_at_the_next_sweep(bus, redis, nats_server, valkey_server):
    await put_spec(bus, make_quota_spec())
    seconds, _ = await redis.time()
    await redis.zadd(ledger.ROUTERS_KEY, {"live": seconds * 1000 + 60_000})
    await _reserve(redis, "req-1", "live", seconds - 3600, total=40, prompt=4)
    await _reserve(redis, "req-sentinel", "gone", seconds - 3600, total=1, prompt=0)
    settings = make_settings(nats_server.url, valkey_server.url)
    async with running_accountant(settings) as acct:
        await wait_for(
            lambda: acct.metric("arks_accountant_reservations_lease_released_total") == 1,
            what="a sweep pass",
        )
        assert await _reserved(redis) == 40  # an hour old, but its router is alive
        # the router stops and gives its lease up (`Lease.release()`)
        await redis.zrem(ledger.ROUTERS_KEY, "live")
        await wait_for(
            lambda: acct.metric("arks_accountant_reservations_lease_released_total") == 2,
            what="released after the lease was given up",
        )
        assert await _reserved(redis) == 0
        assert not await redis.exists(ledger.reservation_routers_key(NS, QUOTA))
