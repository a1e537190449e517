"""Usage is never lost: NATS outages, router restarts, settlement of the windows."""

from __future__ import annotations

import asyncio
import collections
import signal

import httpx

from arks_common import ledger, subjects
from arks_common.events import QuotaLimit
from arks_common.testing.builders import make_quota_spec
from arks_router import limits

TOKEN = "sk-usage"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def chat(max_tokens: int = 4, stream: bool = False) -> dict[str, object]:
    return {
        "model": "m",
        "messages": [{"role": "user", "content": f"count to {max_tokens}"}],
        "max_tokens": max_tokens,
        "stream": stream,
    }


async def test_nats_down_serves_from_memory_spools_and_replays_exactly_once(
    sims, routers, state, usage, nats_server, tmp_path
):
    url = await sims.start("m")
    await state.route("m", [url])
    await state.token(TOKEN, ["m"], rpm=1000)
    router = await routers.start()
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as http:
        before = await http.post("/v1/chat/completions", json=chat(), headers=AUTH)
        await usage.wait(1)
        nats_server.stop()
        during = [
            await http.post("/v1/chat/completions", json=chat(3, stream=i % 2 == 1), headers=AUTH)
            for i in range(6)
        ]
        assert all(a.status_code == 200 for a in during)
        ready = await http.get(router.admin + "/readyz")
        assert ready.status_code == 200  # the last known state keeps serving
        spool = next((tmp_path / "spool").glob("usage-*.spool"))
        for _ in range(200):
            if spool.read_bytes().count(b"\n") >= 6:
                break
            await asyncio.sleep(0.05)
        assert spool.read_bytes().count(b"\n") == 6  # all six, durable, none published
        nats_server.start()
        events = await usage.wait(7, within=20)
    ids = [e.id for e in events]
    assert collections.Counter(ids).most_common(1)[0][1] == 1
    expected = [before.headers["x-request-id"]] + [a.headers["x-request-id"] for a in during]
    assert ids == expected  # replayed in order
    await asyncio.sleep(1.0)  # nothing more arrives later
    assert len(await usage.all()) == 7
    assert spool.stat().st_size == 0


async def test_spool_survives_a_router_restart(sims, routers, state, usage, nats_server):
    url = await sims.start("m")
    await state.route("m", [url])
    await state.token(TOKEN, ["m"], rpm=1000)
    first = await routers.spawn()
    nats_server.stop()
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as http:
        answers = [
            await http.post("/v1/chat/completions", json=chat(2), headers=AUTH) for _ in range(5)
        ]
    assert all(a.status_code == 200 for a in answers)
    await first.stop()  # SIGTERM: what is still in memory goes to the spool
    nats_server.start()
    await routers.spawn()
    events = await usage.wait(5, within=20)
    assert sorted(e.id for e in events) == sorted(a.headers["x-request-id"] for a in answers)
    await asyncio.sleep(1.0)
    assert len(await usage.all()) == 5


async def test_windows_settle_to_engine_usage_and_reservations_match_the_ledger(
    sims, routers, state, usage, redis
):
    url = await sims.start("m")
    await state.route("m", [url])
    spec = make_quota_spec(
        name="q",
        limits=[QuotaLimit(type="total", value=10**9), QuotaLimit(type="prompt", value=10**9)],
    )
    await state.quota(spec)
    await state.token(TOKEN, ["m"], quota="q", rpm=1000, tpm=10**8, tpd=10**9)
    router = await routers.start()
    sizes = [3, 17, 40, 1, 64, 9, 25, 5]
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as http:
        answers = await asyncio.gather(
            *(
                http.post("/v1/chat/completions", json=chat(n, stream=i % 2 == 0), headers=AUTH)
                for i, n in enumerate(sizes)
            )
        )
    assert all(a.status_code == 200 for a in answers)
    events = await usage.wait(len(sizes))
    assert sorted(e.completion_tokens for e in events) == sorted(sizes)
    assert all(e.usage_source == "engine" for e in events)
    engine_total = sum(e.total_tokens for e in events)
    tag = limits.slot_tag("default", "tok", "m", "q")
    # Settlement runs right after each response's last byte (after its usage event).
    tpm_key = limits.window_key(tag, "default", "tok", "m", "tpm")
    for _ in range(100):
        if int((await redis.hget(tpm_key, "t")) or 0) == engine_total:
            break
        await asyncio.sleep(0.05)
    for rule in ("tpm", "tpd"):
        window = await redis.hgetall(limits.window_key(tag, "default", "tok", "m", rule))
        assert int(window[b"t"]) == engine_total
        buckets = sum(int(v) for k, v in window.items() if k not in (b"t", b"h"))
        assert buckets == engine_total
    rpm = await redis.hgetall(limits.window_key(tag, "default", "tok", "m", "rpm"))
    assert int(rpm[b"t"]) == len(sizes)
    # Ledger step 1: one reservation per request, in the period the event names, and
    # the reserved counters are exactly their sum, so releasing each event's
    # reservation (step 3, the accountant's) brings them back to zero.
    released = {"prompt": 0, "total": 0}
    for event in events:
        assert event.quota == "q"
        assert event.quota_period == "lifetime"
        resv = await redis.hgetall(ledger.reservation_key("default", "q", event.id))
        assert resv[b"period"] == b"lifetime"
        assert int(resv[b"total"]) == event.reserved_tokens
        assert int(resv[b"response"]) == 0
        for kind in released:
            released[kind] += int(resv[kind.encode()])
    for kind, amount in released.items():
        reserved = await redis.get(ledger.reserved_key("default", "q", "lifetime", kind))
        assert int(reserved) == amount
    index = await redis.zrange(ledger.reservation_index_key("default", "q"), 0, -1)
    assert sorted(i.decode() for i in index) == sorted(e.id for e in events)
    assert subjects.usage_subject("default", "m").endswith(".default.m")


async def test_usage_in_memory_survives_a_sigkill(sims, routers, state, usage, nats_server):
    """NATS stalls (acks do not come), answered requests' usage waits in the router's
    memory, the router is killed with SIGKILL: the next router on the slot replays it
    from the journal, each event once."""
    url = await sims.start("m")
    await state.route("m", [url])
    await state.token(TOKEN, ["m"], rpm=1000)
    first = await routers.spawn(ARKS_USAGE__PUBLISH_TIMEOUT="60")
    assert first.proc is not None
    nats_server.proc.send_signal(signal.SIGSTOP)
    try:
        async with httpx.AsyncClient(base_url=first.url, timeout=30) as http:
            answers = [
                await http.post(
                    "/v1/chat/completions", json=chat(2, stream=i % 2 == 1), headers=AUTH
                )
                for i in range(5)
            ]
        assert all(a.status_code == 200 for a in answers)
        first.proc.kill()
        await first.proc.wait()
    finally:
        nats_server.proc.send_signal(signal.SIGCONT)
    journals = list((routers.workdir / "spool").glob("usage-*.journal-*"))
    assert journals  # the dead process left its journal
    await routers.spawn()
    events = await usage.wait(5, within=20)
    assert sorted(e.id for e in events) == sorted(a.headers["x-request-id"] for a in answers)
    await asyncio.sleep(1.0)
    assert len(await usage.all()) == 5  # nothing twice
