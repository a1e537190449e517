"""The durable spool and the publisher's replay, against a real JetStream."""

from __future__ import annotations

import asyncio
import threading

from prometheus_client import CollectorRegistry

from arks_common import subjects
from arks_common.testing.builders import make_usage_event
from arks_router.journaling import Journal
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


# ----------------------------------------------------------------------------- journal
def test_journal_keeps_only_what_is_outstanding(tmp_path):
    journal = Journal(tmp_path, rotate_seconds=3600)
    assert journal.open(0) == []
    a = journal.write(SUBJECT, b'{"a":1}')
    b = journal.write(SUBJECT, b'{"b":2}')
    assert a == b
    segment = tmp_path / f"usage-0.journal-{a}"
    assert segment.read_bytes().count(b"\n") == 2
    journal.done(a)
    assert segment.read_bytes().count(b"\n") == 2  # one still outstanding
    journal.done(b)
    assert segment.read_bytes() == b""  # nothing outstanding: emptied, not rotated
    journal.write(SUBJECT, b'{"c":3}')
    assert segment.read_bytes() == SUBJECT.encode() + b' {"c":3}\n'
    journal.close()
    assert segment.exists()  # {"c":3} was never resolved: a crash now keeps it


def test_journal_rotates_and_deletes_resolved_segments(tmp_path):
    journal = Journal(tmp_path, rotate_seconds=0.0)
    journal.open(0)
    first = journal.write(SUBJECT, b'{"a":1}')
    second = journal.write(SUBJECT, b'{"b":2}')  # rotation before every write here
    assert first != second
    assert len(list(tmp_path.glob("usage-0.journal-*"))) == 2
    journal.done(first)
    assert [p.name for p in tmp_path.glob("usage-0.journal-*")] == [f"usage-0.journal-{second}"]
    journal.done(second)
    journal.close()
    assert list(tmp_path.glob("usage-0.journal-*")) == []


def test_a_dead_process_journal_is_handed_to_the_next_owner_of_the_slot(tmp_path):
    dead = Journal(tmp_path, rotate_seconds=0.0)
    dead.open(3)
    dead.write(SUBJECT, b'{"a":1}')
    dead.write(SUBJECT, b'{"b":2}')
    with (tmp_path / "usage-3.journal-2").open("ab") as raw:
        raw.write(b'arks.usage.default.q {"torn')  # killed in the middle of a write
    # (no close: the process was killed)
    other_slot = Journal(tmp_path)
    assert other_slot.open(4) == []
    heir = Journal(tmp_path)
    assert heir.open(3) == [(SUBJECT, b'{"a":1}'), (SUBJECT, b'{"b":2}')]
    heir.discard_leftovers()
    assert list(tmp_path.glob("usage-3.journal-*")) == []
    segment = heir.write(SUBJECT, b'{"c":3}')
    assert segment == 3  # numbered after the leftovers
