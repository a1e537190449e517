"""A router crash gives back what it held: leases, stream progress, retryable 429s.

Real parts throughout: engine-sim processes, routers as `arks-router` processes (the
one killed) and in-process on uvicorn, the `arks-accountant` process, nats-server and
Valkey, the `openai` client.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import httpx
import openai
import pytest

from arks_common import ledger, subjects
from arks_common.events import BillingRecord, Outcome, QuotaLimit, UsageRecorded
from arks_common.messaging import Bus
from arks_common.testing.builders import make_quota_spec
from arks_router import governing, leasing
from arks_router.settings import RouterSettings
from arks_router.spooling import decode_record

TOKEN = "sk-leases"
QUOTA = "q"
LIMIT = 3000
MESSAGES = [{"role": "user", "content": "Tell me a long story."}]
SLOW_SIM = {
    # 10 tokens a second, 1,000 of them: a stream that is still going when we kill
    "time_scale": "1",
    "step_base_ms": "100",
    "output_len_min": "1000",
    "output_len_max": "1000",
}


async def _stream_messages(bus: Bus, stream: str) -> list[bytes]:
    info = await bus.js.stream_info(stream)
    found: list[bytes] = []
    if info.state.messages == 0:
        return found
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await bus.js.get_msg(stream, seq)
        found.append(msg.data or b"")
    return found


def _progress_records(spool: Path, request_id: str) -> list[UsageRecorded]:
    """The progress records of one request in the journal segments of `spool`."""
    found: list[UsageRecorded] = []
    for segment in sorted(spool.glob("usage-*.journal-*")):
        for line in segment.read_bytes().split(b"\n")[:-1]:
            record = decode_record(line)
            if record is None:
                continue
            event = UsageRecorded.from_bytes(record[1])
            if event.id == request_id and event.outcome is Outcome.INTERRUPTED:
                found.append(event)
    return found


async def _until(check, *, within: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


async def test_a_router_holds_its_lease_while_it_runs_and_gives_it_up(valkey_server, redis):
    settings = RouterSettings.model_validate({"redis": {"url": valkey_server.url}})
    client = governing.connect(settings)
    lease = leasing.Lease(client, refresh_seconds=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(lease.run(stop))
    try:

        async def registered() -> float | None:
            return await redis.zscore(ledger.ROUTERS_KEY, lease.router_id)

        first = await _until(registered, within=5, what="the lease")
        seconds, micros = await redis.time()
        now_ms = seconds * 1000 + micros // 1000
        assert now_ms < first <= now_ms + ledger.ROUTER_LEASE_SECONDS * 1000

        async def refreshed() -> bool:
            return (await registered() or 0) > first

        await _until(refreshed, within=5, what="a refresh")
    finally:
        stop.set()
        await task
    await lease.release()
    assert await redis.zscore(ledger.ROUTERS_KEY, lease.router_id) is None
    await client.close()


async def _setup(sims, state) -> None:
    slow = await sims.start("slow", **SLOW_SIM)
    fast = await sims.start("fast")
    await state.route("slow", [slow])
    await state.route("fast", [fast])
    await state.quota(make_quota_spec(name=QUOTA, limits=[QuotaLimit(type="total", value=LIMIT)]))
    await state.token(TOKEN, ["slow", "fast"], quota=QUOTA, rpm=10_000)


async def test_a_quota_full_of_reservations_in_flight_answers_a_retryable_rate_limit(
    sims, routers, state, redis
):
    """Nothing used, one long stream holding 2/3 of the quota: the next request that
    needs more than what is left is told to retry (429 rate_limit_exceeded with
    Retry-After, what OpenAI's SDKs retry), not that the quota is exhausted."""
    await _setup(sims, state)
    router = await routers.start()
    client = router.openai(TOKEN)
    stream = await client.chat.completions.create(
        model="slow", messages=MESSAGES, max_tokens=2000, stream=True
    )
    try:
        await anext(aiter(stream))  # admitted and streaming: its reservation is held
        with pytest.raises(openai.RateLimitError) as held:
            await client.chat.completions.create(model="fast", messages=MESSAGES, max_tokens=1500)
        assert held.value.status_code == 429
        assert held.value.code == "rate_limit_exceeded"
        assert held.value.param == "total"
        assert held.value.response.headers["retry-after"] == "1"
        # what fits beside the stream's reservation is admitted
        small = await client.chat.completions.create(
            model="fast", messages=MESSAGES, max_tokens=100
        )
        assert small.usage is not None
        # the used budget itself leaves no room: that is exhaustion, not retryable
        await redis.set(ledger.used_key("default", QUOTA, "lifetime", "total"), LIMIT - 100)
        with pytest.raises(openai.RateLimitError) as exhausted:
            await client.chat.completions.create(model="fast", messages=MESSAGES, max_tokens=500)
        assert exhausted.value.type == "insufficient_quota"
        assert exhausted.value.code != "rate_limit_exceeded"
    finally:
        await stream.close()
        await client.close()


@pytest.mark.timeout(240)
async def test_a_router_killed_mid_stream_gives_back_its_reservation_and_bills_what_was_sent(
    sims, routers, accountants, state, bus, redis, tmp_path, usage
):
    await _setup(sims, state)
    slow_sim = sims.procs[0]
    await accountants.spawn()
    doomed = await routers.spawn()  # spool slot 0 of `spool/`
    assert doomed.proc is not None
    client = doomed.openai(TOKEN)

    # A stream that ends normally before the crash, long enough to have been
    # journaled in progress: its final event must be the one that counts.
    finished_stream = await client.chat.completions.create(
        model="slow", messages=MESSAGES, max_tokens=15, stream=True
    )
    finished_id = finished_stream.response.headers["x-request-id"]
    finished_chunks = [c async for c in finished_stream]
    assert sum(1 for c in finished_chunks if c.choices and c.choices[0].delta.role is None)

    # The stream the crash interrupts: it reserves prompt + 2,000 of 3,000 tokens.
    stream = await client.chat.completions.create(
        model="slow", messages=MESSAGES, max_tokens=2000, stream=True
    )
    crashed_id = stream.response.headers["x-request-id"]
    tokens: list[str] = []  # content chunks the client received

    async def read() -> None:
        with contextlib.suppress(openai.APIError, httpx.HTTPError):
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.role is None:
                    tokens.append(chunk.choices[0].delta.content or "")

    reader = asyncio.create_task(read())

    async def some_received() -> bool:
        return len(tokens) >= 5

    await _until(some_received, within=30, what="the first chunks")
    slow_sim.send_signal(signal.SIGSTOP)  # the stream stands still
    try:
        spool = routers.workdir / "spool"

        async def journal_caught_up() -> bool:
            records = _progress_records(spool, crashed_id)
            return bool(records) and records[-1].completion_tokens == len(tokens)

        await _until(journal_caught_up, within=20, what="the stream's progress record")
        doomed.proc.kill()
        killed_at = time.monotonic()
        await doomed.proc.wait()
        await reader
    finally:
        slow_sim.send_signal(signal.SIGCONT)
    delivered = len(tokens)
    await client.close()

    # A surviving router (its own spool) needs the budget the dead one held.
    survivor = await routers.start(usage={"spool_dir": str(tmp_path / "survivor-spool")})
    probe_client = survivor.openai(TOKEN)
    refusals: list[tuple[str | None, str | None]] = []  # (code, retry-after) of each 429
    while True:
        try:
            probe = await probe_client.chat.completions.with_raw_response.create(
                model="fast", messages=MESSAGES, max_tokens=1500
            )
            break
        except openai.RateLimitError as refused:
            refusals.append((refused.code, refused.response.headers.get("retry-after")))
        assert time.monotonic() - killed_at < 120, "the dead router's reservation stayed"
        await asyncio.sleep(0.25)
    released_after = time.monotonic() - killed_at
    print(f"\nreservation of the killed router released after {released_after:.1f} s")
    assert refusals  # it was held when the router died
    assert {code for code, _ in refusals} == {"rate_limit_exceeded"}  # retryable, not exhausted
    assert all(int(after or 0) >= 1 for _, after in refusals)
    await probe_client.close()
    probe_id = probe.headers["x-request-id"]
    probe_usage = probe.parse().usage
    assert probe_usage is not None

    # The next router on the dead one's spool slot bills what the client received.
    await routers.spawn()
    wanted = {finished_id, crashed_id, probe_id}
    events = await usage.wait(3, within=30, check=lambda found: wanted <= {e.id for e in found})
    crashed = [e for e in events if e.id == crashed_id]
    assert len(crashed) == 1
    [event] = crashed
    assert event.outcome is Outcome.INTERRUPTED
    assert event.usage_source == "estimated"
    assert event.completion_tokens == delivered
    assert event.prompt_tokens == event.reserved_tokens - 2000  # the prompt estimate
    [finished] = [e for e in events if e.id == finished_id]
    assert finished.outcome is Outcome.SUCCESS
    assert finished.usage_source == "engine"
    assert finished.completion_tokens == 15

    total = event.total_tokens + finished.total_tokens + probe_usage.total_tokens

    async def settled() -> bool:
        used = await redis.get(ledger.used_key("default", QUOTA, "lifetime", "total"))
        reserved = await redis.get(ledger.reserved_key("default", QUOTA, "lifetime", "total"))
        return int(used or 0) == total and int(reserved or 0) == 0

    await _until(settled, within=30, what="the accountant applying the usage")
    await asyncio.sleep(1.0)  # nothing more arrives later
    assert await settled()
    bills = [
        BillingRecord.from_bytes(data)
        for data in await _stream_messages(bus, subjects.BILLING_STREAM)
    ]
    [bill] = [b for b in bills if b.request_id == crashed_id]
    assert (bill.prompt_tokens, bill.completion_tokens) == (event.prompt_tokens, delivered)
    assert [b.completion_tokens for b in bills if b.request_id == finished_id] == [15]
    assert len([e for e in await usage.all() if e.id == crashed_id]) == 1
