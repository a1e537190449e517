"""In-flight markers in ledger entries stay bounded: the ack floor drops the markers of
messages that can never be delivered again, and lanes fetch smaller batches while a hot
quota's entry is over its budget."""

from __future__ import annotations

import asyncio

import pytest

from arks_accountant import fetch_limit, keys
from arks_accountant.deliveries import Delivery
from arks_accountant.recording import (
    Inflight,
    LaneMarkers,
    LedgerEntry,
    LedgerRecorder,
    Snapshot,
)
from arks_accountant.settings import ConsumerSettings, LedgerSettings
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
from arks_common import subjects
from arks_common.testing.builders import make_quota_spec, make_usage_event

NS, QUOTA = "default", "basic-quota"


def last_seq(batch: list[Delivery]) -> int:
    return max(d.stream_sequence for d in batch)


async def test_markers_of_acked_messages_leave_the_ledger(bus, redis, nats_server, valkey_server):
    """A process applies a batch and dies before acking; its lane's markers stay in the
    entry while the messages may be redelivered, and are dropped by the next write once
    the consumer's ack floor passed them."""
    spec = make_quota_spec()
    await publish_usage(bus, *[make_usage_event(prompt_tokens=1) for _ in range(30)])
    gone_settings = make_settings(nats_server.url, valkey_server.url, instance_id="gone")
    alive_settings = make_settings(nats_server.url, valkey_server.url, instance_id="alive")
    kv = await bus.kv(subjects.LEDGER_BUCKET)

    async def sets() -> dict[str, tuple[int, int]]:
        entry = LedgerEntry.from_bytes((await kv.get(subjects.namespaced_key(NS, QUOTA))).value)
        return {owner: (len(f.markers), f.seq) for owner, f in entry.inflight.items()}

    batches = [await fetch_unacked(bus, gone_settings, 10) for _ in range(3)]
    async with standalone_accountant(bus, redis, gone_settings, specs=[spec]) as gone:
        await gone.handle_batch(batches[0], gone.lane(0))
    async with standalone_accountant(bus, redis, alive_settings, specs=[spec]) as alive:
        lane = alive.lane(0)
        await alive.handle_batch(batches[1], lane)
        assert await sets() == {"gone/0": (10, last_seq(batches[0])), "alive/0": (10, 20)}

        # the dead process's messages are acked (as after their redelivery elsewhere)
        for delivery in batches[0]:
            await bus.nc.publish(delivery.reply.decode(), b"+ACK")
        await bus.nc.flush()
        stop = asyncio.Event()
        follower = asyncio.create_task(alive.follow_ack_floor(stop))
        try:
            await wait_for(
                lambda: alive.recorder.ack_floor == last_seq(batches[0]), what="the ack floor"
            )
            await alive.handle_batch(batches[2], lane)
        finally:
            stop.set()
            await follower
        # batch 1 is neither acked nor confirmed: the lane keeps its markers with batch 2's
        assert await sets() == {"alive/0": (20, last_seq(batches[2]))}


async def test_the_floor_keeps_sets_it_has_not_passed_and_sets_without_sequences(bus):
    account = keys.Account(NS, QUOTA)
    recorder = LedgerRecorder(bus)
    await recorder.put_fresh(
        account.ledger_key,
        LedgerEntry(
            epoch=1,
            version=1,
            fields={"ver": "1"},
            inflight={
                "old/0": Inflight(at=1.0, markers={"a": "lifetime||0"}),  # written before seqs
                "done/0": Inflight(at=1.0, markers={"b": "lifetime||0"}, seq=40),
                "pending/0": Inflight(at=1.0, markers={"c": "lifetime||0"}, seq=60),
            },
        ),
    )
    recorder.ack_floor = 50
    snapshot = Snapshot(1, 2, {"ver": "2"}, {"new/0": LaneMarkers({"d": "lifetime||0"}, 70)}, {})
    assert await recorder.record(account, snapshot)
    stored = await recorder.read(account.ledger_key)
    assert stored is not None
    assert set(stored[1].inflight) == {"old/0", "pending/0", "new/0"}
    assert stored[1].inflight["new/0"].seq == 70


async def test_lanes_fetch_half_as_much_after_an_entry_over_budget(
    bus, redis, nats_server, valkey_server, monkeypatch: pytest.MonkeyPatch
):
    spec = make_quota_spec()
    await publish_usage(bus, *[make_usage_event(prompt_tokens=1) for _ in range(100)])
    settings = make_settings(
        nats_server.url,
        valkey_server.url,
        consumer=ConsumerSettings(batch=80, ack_wait=5, fetch_timeout=0.2),
        ledger=LedgerSettings(watchdog_interval=0.1, entry_budget=2000),
    )
    async with standalone_accountant(bus, redis, settings, specs=[spec]) as accountant:
        assert accountant.batch_size() == 80
        lane = accountant.lane(0)
        await accountant.handle_batch(await fetch_unacked(bus, settings, 80), lane)
        assert accountant.recorder.over_budget == 1  # 80 markers: ~5 kB
        assert accountant.batch_size() == 40
        assert accountant.batch_size() == 40  # halved once per entry over budget
        await accountant.handle_batch(await fetch_unacked(bus, settings, 20), lane)
        assert accountant.batch_size() == 20  # still over: this lane kept batch 1's markers
        monkeypatch.setattr(fetch_limit, "_GROW_AFTER", 0.0)
        assert [accountant.batch_size() for _ in range(4)] == [30, 45, 67, 80]


async def test_a_hot_quota_settles_exactly_with_an_entry_budget(
    bus, redis, nats_server, valkey_server
):
    """Three lanes on one quota with an entry budget a fraction of one batch's markers:
    the lanes shrink their batches, and every event is still applied and billed once."""
    await put_spec(bus, make_quota_spec())
    usage = [make_usage_event(prompt_tokens=i % 7, completion_tokens=1) for i in range(1200)]
    settings = make_settings(
        nats_server.url,
        valkey_server.url,
        consumer=ConsumerSettings(batch=200, ack_wait=5, fetch_timeout=0.2, lanes=3),
        ledger=LedgerSettings(watchdog_interval=0.1, entry_budget=4000),
    )
    want = expected_used(usage)

    async def all_applied() -> bool:
        got = await used(redis, NS, QUOTA)
        return {k: got[k] for k in want} == want

    await publish_usage(bus, *usage)  # waiting when it starts: full batches at once
    async with running_accountant(settings) as acct:
        await wait_for(
            lambda: 0 < acct.metric("arks_accountant_fetch_limit") < 200,
            what="smaller batches",
            interval=0.01,
        )
        await wait_for(all_applied, within=60, what="every event applied")
        await wait_for(
            lambda: acct.metric("arks_accountant_events_total", result="applied") == len(usage),
            what="applied counted",
        )
        assert acct.metric("arks_accountant_events_total", result="duplicate") == 0
    assert await stream_messages(bus, subjects.BILLING_STREAM) == len(usage)
    assert await stream_messages(bus, subjects.DLQ_STREAM) == 0
