"""The durable spool and the publisher's replay, against a real JetStream."""

from __future__ import annotations

import asyncio
import threading

from prometheus_client import CollectorRegistry

from arks_common import subjects
from arks_common.testing.builders import make_usage_event
from arks_router.metrics import RouterMetrics
from arks_router.publishing import UsagePublisher
from arks_router.settings import UsageSettings
from arks_router.spooling import Spool

SUBJECT = subjects.usage_subject("default", "qwen-7b")


def test_torn_tail_is_cut_and_cursor_survives_reopen(tmp_path):
    spool = Spool(tmp_path)
    spool.open()
    spool.append([(SUBJECT, b'{"a":1}'), (SUBJECT, b'{"b":2}')])
    first = spool.read(1)
    spool.advance(first[-1].end)
    spool.close()
    path = tmp_path / "usage-0.spool"
    with path.open("ab") as raw:
        raw.write(b'arks.usage.default.q {"torn')  # a crash in the middle of an append
    reopened = Spool(tmp_path)
    reopened.open()
    records = reopened.read(10)
    assert [r.data for r in records] == [b'{"b":2}']
    reopened.advance(records[-1].end)
    assert path.stat().st_size == 0  # caught up: truncated
    assert not reopened.pending
    reopened.close()


def test_each_process_gets_its_own_slot(tmp_path):
    first, second = Spool(tmp_path), Spool(tmp_path)
    first.open()
    result: list[int | None] = []
    # flock is per open file description: a second process (here a second open in
    # another thread) cannot take slot 0 while the first holds it.
    thread = threading.Thread(target=lambda: (second.open(), result.append(second.slot)))
    thread.start()
    thread.join()
    assert (first.slot, result) == (0, [1])
    first.close()
    second.close()


async def test_replay_after_a_crash_mid_replay_publishes_each_event_once(tmp_path, bus):
    events = [make_usage_event() for _ in range(5)]
    spool = Spool(tmp_path)
    spool.open()
    spool.append([(SUBJECT, e.to_bytes()) for e in events])
    # A previous process published the first three and died before moving the cursor.
    for event in events[:3]:
        await bus.publish(SUBJECT, event)
    spool.close()
    metrics = RouterMetrics(CollectorRegistry())
    publisher = UsagePublisher(bus, Spool(tmp_path), UsageSettings(replay_interval=0.05), metrics)
    await publisher.open()
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    live = make_usage_event()
    publisher.record(SUBJECT, live)
    for _ in range(100):
        info = await bus.js.stream_info(subjects.USAGE_STREAM)
        if info.state.messages >= 6:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await task
    await publisher.close(1.0)
    info = await bus.js.stream_info(subjects.USAGE_STREAM)
    assert info.state.messages == 6
    ids = []
    for seq in range(1, 7):
        msg = await bus.js.get_msg(subjects.USAGE_STREAM, seq)
        ids.append(msg.headers["Nats-Msg-Id"])
    assert ids == [e.id for e in events] + [live.id]
