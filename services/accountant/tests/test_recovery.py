"""Crashes and broker failures: counters are recovered, never reset, and never double counted."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import redis.exceptions

from arks_accountant import keys
from arks_accountant.recording import LedgerEntry
from arks_accountant.testing import (
    expected_used,
    fetch_unacked,
    make_settings,
    publish_usage,
    put_spec,
    running_accountant,
    standalone_accountant,
    stream_messages,
    used,
    wait_for,
)
from arks_common import messaging, subjects
from arks_common.testing.builders import make_quota_spec, make_usage_event

NS, QUOTA = "default", "basic-quota"


def totals_equal(client, usage):
    want = expected_used(usage)

    async def check() -> bool:
        try:
            got = await used(client, NS, QUOTA)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            return False
        return {k: got[k] for k in want} == want

    return check


def wipe_and_restart(server) -> None:
    server.kill()
    shutil.rmtree(server.data_dir)
    server.start()


async def test_valkey_restart_keeps_counters(bus, redis, nats_server, valkey_server):
    await put_spec(bus, make_quota_spec())
    before = [make_usage_event(prompt_tokens=i) for i in range(1, 41)]
    after = [make_usage_event(completion_tokens=i) for i in range(1, 41)]
    settings = make_settings(nats_server.url, valkey_server.url)
    async with running_accountant(settings) as acct:
        await publish_usage(bus, *before)
        await wait_for(totals_equal(redis, before), what="first half")
        restores = acct.metric("arks_accountant_restores_total")  # the first start's
        await asyncio.to_thread(valkey_server.restart)
        await publish_usage(bus, *after)
        await wait_for(totals_equal(redis, before + after), what="all of it")
        assert acct.metric("arks_accountant_restores_total") == restores


async def test_valkey_data_loss_is_restored_from_the_ledger(bus, redis, nats_server, valkey_server):
    await put_spec(bus, make_quota_spec())
    before = [make_usage_event(prompt_tokens=i, completion_tokens=1) for i in range(1, 41)]
    solo = make_usage_event(quota=None, quota_period=None, token_name="solo", prompt_tokens=9)
    after = [make_usage_event(prompt_tokens=2, completion_tokens=i) for i in range(1, 41)]
    settings = make_settings(nats_server.url, valkey_server.url)
    async with running_accountant(settings) as acct:
        await publish_usage(bus, *before, solo)
        await wait_for(totals_equal(redis, before), what="first half")
        await wait_for(
            lambda: acct.metric("arks_accountant_events_total", result="applied") == 41,
            what="solo applied",
        )
        restores = acct.metric("arks_accountant_restores_total")
        await asyncio.to_thread(wipe_and_restart, valkey_server)
        # the watchdog restores without any traffic
        await wait_for(totals_equal(redis, before), what="restored counters")
        # counted when the restore returns, a moment after Valkey holds its counters
        await wait_for(
            lambda: acct.metric("arks_accountant_restores_total") == restores + 1,
            what="one restore counted",
        )
        await publish_usage(bus, *after)
        await wait_for(totals_equal(redis, before + after), what="all of it")
    token = await redis.hgetall(keys.token_usage_key(NS, "example-token"))
    assert int(token[b"requests"]) == 80
    solo_usage = await redis.hgetall(keys.token_usage_key(NS, "solo"))
    assert int(solo_usage[b"prompt"]) == 9
    assert await redis.sismember(keys.tokens_index_key(NS), "solo")


async def test_inflight_events_survive_valkey_data_loss(bus, redis, nats_server, valkey_server):
    """Applied and recorded, then Valkey loses everything before the acks: the redelivered
    batch is recognised from the ledger's in-flight markers and not counted again."""
    spec = make_quota_spec()
    usage = [make_usage_event(prompt_tokens=i, completion_tokens=i) for i in range(1, 31)]
    await publish_usage(bus, *usage)
    settings = make_settings(nats_server.url, valkey_server.url)
    async with standalone_accountant(bus, redis, settings, specs=[spec]) as accountant:
        batch = await fetch_unacked(bus, settings, 30)
        await accountant.handle_batch(batch)
        await redis.flushall()
        accountant.restorer.epoch = None
        again = await accountant.handle_batch(batch)
    assert all(isinstance(d, messaging.Ack) for d in again)
    assert await totals_equal(redis, usage)()
    assert await redis.get(keys.EPOCH_KEY) == b"2"


async def test_lost_ledger_is_reseeded_from_valkey(bus, redis, nats_server, valkey_server):
    await put_spec(bus, make_quota_spec())
    usage = [make_usage_event(prompt_tokens=3) for _ in range(10)]
    settings = make_settings(nats_server.url, valkey_server.url)
    async with running_accountant(settings):
        await publish_usage(bus, *usage)
        await wait_for(totals_equal(redis, usage), what="applied")
    await bus.js.delete_key_value(subjects.LEDGER_BUCKET)
    await bus.ensure_topology()
    async with running_accountant(settings):
        kv = await bus.kv(subjects.LEDGER_BUCKET)
        entry = await kv.get(subjects.namespaced_key(NS, QUOTA))
        assert b'"p:lifetime:prompt":"30"' in entry.value
    await asyncio.to_thread(wipe_and_restart, valkey_server)
    async with running_accountant(settings):
        await wait_for(totals_equal(redis, usage), what="restored from the re-seeded ledger")


async def test_nats_restart(bus, redis, nats_server, valkey_server):
    await put_spec(bus, make_quota_spec())
    before = [make_usage_event(prompt_tokens=5) for _ in range(50)]
    after = [make_usage_event(completion_tokens=7) for _ in range(50)]
    settings = make_settings(nats_server.url, valkey_server.url)
    async with running_accountant(settings) as acct:
        await publish_usage(bus, *before)
        await wait_for(totals_equal(redis, before), what="before the restart")
        await asyncio.to_thread(nats_server.restart)
        await wait_for(lambda: bus.connected and acct.service.health.ready, what="reconnected")
        for event in after:
            while True:
                try:
                    await publish_usage(bus, event)
                    break
                except Exception:
                    await asyncio.sleep(0.1)
        await wait_for(totals_equal(redis, before + after), within=30, what="after the restart")
    assert await stream_messages(bus, subjects.BILLING_STREAM) == 100


def _accountant_process(nats_url: str, redis_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ARKS_NATS__URL": nats_url,
        "ARKS_REDIS__URL": redis_url,
        "ARKS_STATUS__WRITER": "none",
        "ARKS_CONSUMER__BATCH": "50",
        "ARKS_CONSUMER__LANES": "2",
        "ARKS_CONSUMER__ACK_WAIT": "2",
        "ARKS_TELEMETRY__LOG_JSON": "false",
    }
    script = Path(sys.executable).parent / "arks-accountant"
    with log.open("ab") as sink:
        return subprocess.Popen(
            [str(script)], env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


async def test_kill_9_mid_batch_then_restart(bus, redis, nats_server, valkey_server, tmp_path):
    await put_spec(bus, make_quota_spec())
    usage = [make_usage_event(prompt_tokens=i % 97, completion_tokens=i % 13) for i in range(3000)]
    futures = []
    for event in usage:
        futures.append(
            await bus.js.publish_async(
                subjects.usage_subject(NS, event.endpoint),
                event.to_bytes(),
                headers=event.headers(),
            )
        )
    await asyncio.gather(*futures)
    log = tmp_path / "accountant.log"
    proc = _accountant_process(nats_server.url, valkey_server.url, log)
    try:

        async def partly_applied() -> bool:
            return bool(await redis.hget(keys.quota_usage_key(NS, QUOTA), "requests"))

        await wait_for(partly_applied, within=30, what="some events applied", interval=0.005)
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait)
        killed_at = int(await redis.hget(keys.quota_usage_key(NS, QUOTA), "requests") or 0)
        assert 0 < killed_at < len(usage)
        proc = _accountant_process(nats_server.url, valkey_server.url, log)
        await wait_for(totals_equal(redis, usage), within=45, what="everything applied once")

        async def all_billed() -> bool:
            return await stream_messages(bus, subjects.BILLING_STREAM) >= len(usage)

        # the batches in flight at the kill are redelivered after ack_wait: then re-billed
        await wait_for(all_billed, within=45, what="every event billed")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.wait, 15)
    assert proc.returncode == 0, log.read_text()[-3000:]
    requests = await redis.hget(keys.quota_usage_key(NS, QUOTA), "requests")
    assert int(requests) == len(usage)
    assert await stream_messages(bus, subjects.BILLING_STREAM) == len(usage)
    assert await stream_messages(bus, subjects.DLQ_STREAM) == 0


async def test_inflight_markers_are_kept_until_nats_confirmed_the_acks(
    bus, redis, nats_server, valkey_server
):
    """A lane keeps a batch's done-markers in its ledger writes until a PING written after
    the batch's acks is answered; a batch whose acks were not all written keeps them."""
    spec = make_quota_spec()
    usage = [make_usage_event(prompt_tokens=1) for _ in range(30)]
    await publish_usage(bus, *usage)
    settings = make_settings(nats_server.url, valkey_server.url)
    kv = await bus.kv(subjects.LEDGER_BUCKET)

    async def inflight(lane_id: str) -> set[str]:
        entry = LedgerEntry.from_bytes((await kv.get(subjects.namespaced_key(NS, QUOTA))).value)
        return set(entry.inflight[lane_id].markers)

    async with standalone_accountant(bus, redis, settings, specs=[spec]) as accountant:
        batches = [await fetch_unacked(bus, settings, 10) for _ in range(3)]
        ids = [{e.id for e in usage if any(e.id.encode() in m.data for m in b)} for b in batches]
        lane = accountant.lane(0)
        await accountant.handle_batch(batches[0], lane)
        lane.acks_sent(asyncio.get_running_loop().create_future())  # PING not answered yet
        await accountant.handle_batch(batches[1], lane)
        assert await inflight(lane.id) == ids[0] | ids[1]
        answered = asyncio.get_running_loop().create_future()
        answered.set_result(None)
        lane.acks_sent(answered)  # batch 1's acks are confirmed; batch 0's PING still pending
        await accountant.handle_batch(batches[2], lane)
        assert await inflight(lane.id) == ids[0] | ids[2]
