"""Messaging against a real nats-server: dedup, consumption outcomes, KV watch, restarts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import pytest
from nats.aio.msg import Msg

from arks_common import events, messaging, subjects
from arks_common.embedded import NatsServer
from arks_common.errors import PermanentError, RetryableError
from arks_common.settings import NatsSettings
from arks_common.testing.builders import make_usage_event


async def test_publish_is_deduplicated_by_event_id(bus: messaging.Bus) -> None:
    event = make_usage_event()
    first = await bus.publish(subjects.usage_subject("default", "qwen-7b"), event)
    again = await bus.publish(subjects.usage_subject("default", "qwen-7b"), event)
    assert not first.duplicate
    assert again.duplicate
    info = await bus.js.stream_info(subjects.USAGE_STREAM)
    assert info.state.messages == 1


async def test_ensure_topology_is_idempotent(bus: messaging.Bus) -> None:
    await bus.ensure_topology()
    await bus.ensure_topology()
    names = {s.config.name for s in await bus.js.streams_info()}
    assert {c.name for c in messaging.STREAMS} <= names


async def _consume_until(
    bus: messaging.Bus, spec: messaging.ConsumerSpec, handler: messaging.BatchHandler, done
) -> None:
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(bus.consume(spec, handler, stop=stop))
        try:
            await asyncio.wait_for(done.wait(), 20)
        finally:
            stop.set()


async def test_consume_maps_errors_to_ack_nak_and_dead_letter(bus: messaging.Bus) -> None:
    good, flaky, poison = (make_usage_event() for _ in range(3))
    for event in (good, flaky, poison):
        await bus.publish(subjects.usage_subject("default", "qwen-7b"), event)
    seen: dict[str, int] = {}
    done = asyncio.Event()

    async def handle(msg: Msg) -> None:
        event = events.decode_as(events.UsageRecorded, msg.data)
        seen[event.id] = seen.get(event.id, 0) + 1
        if event.id == poison.id:
            raise PermanentError("cannot be applied")
        if event.id == flaky.id and seen[event.id] == 1:
            raise RetryableError("try later", delay=0.05)
        if len(seen) == 3 and seen[flaky.id] == 2:
            done.set()

    spec = messaging.ConsumerSpec(
        stream=subjects.USAGE_STREAM,
        durable="test-consumer",
        filter_subject=subjects.USAGE_ALL,
        fetch_timeout=0.2,
    )
    await _consume_until(bus, spec, messaging.per_message(handle), done)
    assert seen == {good.id: 1, flaky.id: 2, poison.id: 1}
    dlq = await bus.js.pull_subscribe(subjects.DLQ_ALL, durable="dlq-reader")
    (dead,) = await dlq.fetch(1, timeout=5)
    assert dead.headers is not None
    assert dead.headers[messaging.REASON_HEADER] == "cannot be applied"
    assert events.decode_as(events.UsageRecorded, dead.data).id == poison.id
    await dlq.unsubscribe()
    info = await bus.js.consumer_info(subjects.USAGE_STREAM, "test-consumer")
    assert info.num_ack_pending == 0
    assert info.num_pending == 0


async def test_batch_handler_failure_redelivers_every_message(bus: messaging.Bus) -> None:
    for _ in range(4):
        await bus.publish(subjects.usage_subject("default", "qwen-7b"), make_usage_event())
    calls: list[int] = []
    done = asyncio.Event()

    async def handle(batch: Sequence[Msg]) -> Sequence[messaging.Disposition]:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RetryableError("redis is away", delay=0.05)
        if sum(calls[1:]) >= 4:
            done.set()
        return [messaging.Ack()] * len(batch)

    spec = messaging.ConsumerSpec(
        stream=subjects.USAGE_STREAM,
        durable="batchy",
        filter_subject=subjects.USAGE_ALL,
        fetch_timeout=0.2,
    )
    await _consume_until(bus, spec, handle, done)
    assert calls[0] == 4
    assert sum(calls[1:]) == 4


async def test_watch_yields_snapshot_then_changes(bus: messaging.Bus) -> None:
    kv = await bus.kv(subjects.ROUTES_BUCKET)
    await kv.put("default.a", b"1")
    await kv.put("default.b", b"2")
    await kv.delete("default.b")
    stop = asyncio.Event()
    updates = bus.watch(subjects.ROUTES_BUCKET, stop=stop)
    try:
        first = await anext(updates)
        assert first == messaging.KvSnapshot({"default.a": b"1"})
        await kv.put("default.c", b"3")
        change = await anext(updates)
        assert isinstance(change, messaging.KvChange)
        assert (change.key, change.value) == ("default.c", b"3")
        await kv.delete("default.a")
        change = await anext(updates)
        assert isinstance(change, messaging.KvChange)
        assert (change.key, change.value) == ("default.a", None)
    finally:
        stop.set()
        await updates.aclose()


async def test_watch_of_empty_bucket_yields_empty_snapshot(bus: messaging.Bus) -> None:
    stop = asyncio.Event()
    updates = bus.watch(subjects.TOKENS_BUCKET, stop=stop)
    try:
        assert await anext(updates) == messaging.KvSnapshot({})
    finally:
        stop.set()
        await updates.aclose()


async def test_watch_resyncs_after_nats_restart(nats_server: NatsServer) -> None:
    bus = await messaging.Bus.connect(NatsSettings(url=nats_server.url), name="t")
    try:
        await bus.ensure_topology()
        kv = await bus.kv(subjects.QUOTAS_BUCKET)
        await kv.put("default.q", b"v1")
        stop = asyncio.Event()
        updates = bus.watch(subjects.QUOTAS_BUCKET, stop=stop)
        try:
            assert await anext(updates) == messaging.KvSnapshot({"default.q": b"v1"})
            nats_server.restart()
            async with asyncio.timeout(30):
                while True:  # JetStream needs a moment after the restart
                    try:
                        await (await bus.kv(subjects.QUOTAS_BUCKET)).put("default.q", b"v2")
                        break
                    except Exception:
                        await asyncio.sleep(0.2)
            seen: list[messaging.KvUpdate] = []
            async with asyncio.timeout(20):
                async for update in updates:
                    seen.append(update)
                    if isinstance(update, messaging.KvSnapshot):
                        if update.entries.get("default.q") == b"v2":
                            break
                    elif update.value == b"v2":
                        break
            assert seen[-1] != messaging.KvSnapshot({"default.q": b"v1"})
        finally:
            stop.set()
            await updates.aclose()
    finally:
        await bus.close()


async def test_connect_waits_for_a_late_server(tmp_path) -> None:
    server = NatsServer(tmp_path / "late")
    settings = NatsSettings(url=server.url, connect_deadline=20, connect_timeout=0.5)

    async def start_later() -> None:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(server.start)

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(start_later())
            connecting = tg.create_task(messaging.Bus.connect(settings, name="late"))
        bus = connecting.result()
        assert bus.connected
        await bus.close()
    finally:
        server.stop()


async def test_connect_gives_up_with_a_retryable_error() -> None:
    settings = NatsSettings(url="nats://127.0.0.1:1", connect_deadline=0.5, connect_timeout=0.2)
    with pytest.raises(RetryableError):
        await messaging.Bus.connect(settings, name="nobody")


async def test_close_does_not_hang_with_an_idle_pull_subscription(bus: messaging.Bus) -> None:
    stop = asyncio.Event()
    spec = messaging.ConsumerSpec(
        stream=subjects.USAGE_STREAM,
        durable="idle",
        filter_subject=subjects.USAGE_ALL,
        fetch_timeout=0.1,
    )

    async def never(_: Sequence[Msg]) -> Sequence[messaging.Disposition]:
        raise AssertionError("no messages were published")

    task = asyncio.create_task(bus.consume(spec, never, stop=stop))
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(task, 5)
    async with asyncio.timeout(5):
        await bus.close()
    with contextlib.suppress(Exception):
        await bus.close()
