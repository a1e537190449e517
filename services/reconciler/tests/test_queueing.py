"""The keyed queue: serial per key, parallel across keys, coalescing, retries."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from arks_common.errors import RetryableError
from arks_reconciler.queueing import SerialQueue


async def run_queue(queue: SerialQueue[str], body: object) -> None:
    stop = asyncio.Event()
    runner = asyncio.create_task(queue.run(stop))
    try:
        await body  # type: ignore[misc]
    finally:
        stop.set()
        await runner


async def test_one_key_never_runs_twice_at_once_and_adds_coalesce() -> None:
    active: dict[str, int] = defaultdict(int)
    overlap: list[str] = []
    runs: dict[str, int] = defaultdict(int)
    gate = asyncio.Event()

    async def handler(key: str) -> None:
        active[key] += 1
        if active[key] > 1:
            overlap.append(key)
        runs[key] += 1
        await gate.wait()
        active[key] -= 1

    queue: SerialQueue[str] = SerialQueue(handler, workers=4)

    async def body() -> None:
        queue.add("a")
        queue.add("b")
        await asyncio.sleep(0.05)
        assert dict(runs) == {"a": 1, "b": 1}  # different keys run in parallel
        for _ in range(5):
            queue.add("a")  # while running: exactly one more run afterwards
        gate.set()
        await queue.wait_idle()

    await run_queue(queue, body())
    assert overlap == []
    assert runs["a"] == 2
    assert runs["b"] == 1


async def test_errors_are_retried_not_dropped() -> None:
    attempts: list[str] = []

    async def handler(key: str) -> None:
        attempts.append(key)
        if key == "flaky" and attempts.count("flaky") == 1:
            raise RetryableError("not yet", delay=0.05)
        if key == "buggy" and attempts.count("buggy") < 3:
            raise ValueError("a bug")

    queue: SerialQueue[str] = SerialQueue(handler, workers=2, retry_initial=0.02)

    async def body() -> None:
        queue.add("flaky")
        queue.add("buggy")
        for _ in range(100):
            if attempts.count("flaky") >= 2 and attempts.count("buggy") >= 3:
                return
            await asyncio.sleep(0.02)

    await run_queue(queue, body())
    assert attempts.count("flaky") == 2
    assert attempts.count("buggy") == 3


async def test_delayed_add_waits_and_earlier_request_wins() -> None:
    seen: list[float] = []
    loop = asyncio.get_running_loop()

    async def handler(key: str) -> None:
        seen.append(loop.time())

    queue: SerialQueue[str] = SerialQueue(handler)

    async def body() -> None:
        start = loop.time()
        queue.add("k", delay=0.2)
        queue.add("k", delay=5.0)  # later than the pending one: ignored
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        assert seen
        assert seen[0] - start >= 0.15

    await run_queue(queue, body())
    assert len(seen) == 1
