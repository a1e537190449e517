"""Progress records of open streams: kept while needed, superseded by the final event.

The rule (arks_router.progress): only the next owner of a dead process's slot publishes
progress records, after the slot's spool, and a final event of the same request wins
over them, in the journal and, through the shared Nats-Msg-Id, in the stream.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from arks_common import subjects
from arks_common.events import Outcome, UsageRecorded
from arks_common.testing.builders import make_usage_event
from arks_router.journaling import Journal
from arks_router.metrics import RouterMetrics
from arks_router.progress import supersede
from arks_router.publishing import UsagePublisher
from arks_router.settings import UsageSettings
from arks_router.spooling import Spool

SUBJECT = subjects.usage_subject("default", "qwen-7b")


def _progress(request_id: str, completion: int) -> UsageRecorded:
    return make_usage_event(
        id=request_id,
        outcome=Outcome.INTERRUPTED,
        usage_source="estimated",
        completion_tokens=completion,
    )


def test_a_progress_record_stays_while_its_stream_is_open(tmp_path):
    journal = Journal(tmp_path, rotate_seconds=3600)
    journal.open(0)
    assert journal.write_progress("req-a", SUBJECT, _progress("req-a", 1).to_bytes())
    other = journal.write(SUBJECT, make_usage_event(id="req-b").to_bytes())
    segment = tmp_path / f"usage-0.journal-{other}"
    journal.done(other)  # req-b acked; req-a's progress is still needed
    assert segment.read_bytes().count(b"\n") == 2
    assert journal.write_progress("req-a", SUBJECT, _progress("req-a", 7).to_bytes())
    final = journal.write(SUBJECT, make_usage_event(id="req-a").to_bytes())
    journal.drop_progress("req-a")
    assert segment.read_bytes().count(b"\n") == 4  # the final event is outstanding
    journal.done(final)
    assert segment.read_bytes() == b""  # nothing needed any more: emptied
    journal.close()


def test_a_progress_record_moves_with_rotation_and_frees_old_segments(tmp_path):
    journal = Journal(tmp_path, rotate_seconds=0.0)  # a new segment for every write
    journal.open(0)
    journal.write_progress("req-a", SUBJECT, _progress("req-a", 1).to_bytes())
    journal.write_progress("req-a", SUBJECT, _progress("req-a", 2).to_bytes())
    [left] = tmp_path.glob("usage-0.journal-*")
    assert b'"completion_tokens":2' in left.read_bytes()
    journal.drop_progress("req-a")
    journal.close()
    assert list(tmp_path.glob("usage-0.journal-*")) == []


def test_supersede_keeps_final_events_and_the_latest_progress_of_the_others():
    def rec(event: UsageRecorded) -> tuple[str, bytes]:
        return SUBJECT, event.to_bytes()

    final_b = rec(make_usage_event(id="req-b"))
    final_a = rec(make_usage_event(id="req-a"))
    latest_c = rec(_progress("req-c", 4))
    records = [
        rec(_progress("req-a", 3)),
        rec(_progress("req-c", 1)),
        rec(_progress("req-a", 5)),
        final_b,
        latest_c,
        (SUBJECT, b"not json"),
        final_a,
        rec(_progress("req-b", 9)),  # a final event wins whatever the order
    ]
    assert supersede(records) == [
        final_b,
        (SUBJECT, b"not json"),  # passed on: the replay drops it with a log line
        final_a,
        latest_c,
    ]


async def test_the_next_owner_of_a_slot_publishes_final_events_before_progress(tmp_path, bus):
    """What a SIGKILLed router leaves in slot 0, and what the stream gets from it."""
    acked = make_usage_event(id="req-acked")  # published before the crash
    spooled = make_usage_event(id="req-spooled")  # in the spool (NATS was away)
    journaled = make_usage_event(id="req-journaled")  # in memory, journaled
    await bus.publish(SUBJECT, acked)
    dead_spool = Spool(tmp_path)
    dead_spool.open()
    dead_spool.append([(SUBJECT, spooled.to_bytes())])
    dead = Journal(tmp_path, rotate_seconds=3600)
    dead.open(0)
    # a segment kept by an outstanding record still holds progress of finished requests
    for event in (acked, spooled):
        dead.write_progress(event.id, SUBJECT, _progress(event.id, 2).to_bytes())
    dead.write_progress("req-open", SUBJECT, _progress("req-open", 3).to_bytes())
    dead.write_progress("req-journaled", SUBJECT, _progress("req-journaled", 4).to_bytes())
    dead.write(SUBJECT, journaled.to_bytes())
    dead.write_progress("req-open", SUBJECT, _progress("req-open", 6).to_bytes())
    dead_spool.close()  # the kill releases the slot's lock

    metrics = RouterMetrics(CollectorRegistry())
    heir = UsagePublisher(bus, Spool(tmp_path), UsageSettings(replay_interval=0.05), metrics)
    await heir.open()
    stop = asyncio.Event()
    task = asyncio.create_task(heir.run(stop))
    for _ in range(200):
        info = await bus.js.stream_info(subjects.USAGE_STREAM)
        if info.state.messages >= 4:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # the duplicates had their turn too
    stop.set()
    await task
    await heir.close(1.0)
    info = await bus.js.stream_info(subjects.USAGE_STREAM)
    published = []
    for seq in range(1, info.state.messages + 1):
        msg = await bus.js.get_msg(subjects.USAGE_STREAM, seq)
        published.append(UsageRecorded.from_bytes(msg.data or b""))
    assert [(e.id, e.outcome, e.completion_tokens) for e in published] == [
        ("req-acked", Outcome.SUCCESS, 20),
        ("req-spooled", Outcome.SUCCESS, 20),  # the spool first: the final event wins
        ("req-journaled", Outcome.SUCCESS, 20),
        ("req-open", Outcome.INTERRUPTED, 6),  # what the client got before the crash
    ]
