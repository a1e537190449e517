"""A keyed work queue: one object's reconciles run in order, different objects in parallel.

`add(key)` asks for a reconcile of `key`; adds of a key that is already waiting coalesce
into one (level-triggered handlers read the current state, so the last request is all
that matters), and an add while the key's handler runs schedules exactly one more run
after it. `add(key, delay)` schedules a run later (requeue-after); an earlier request
wins over a later one. At most `workers` handlers run at once; a worker exists only
while its key has work (idle workers are torn down, as in kopf's per-object queues).

Failures: a handler raising `RetryableError` is retried after the error's delay; any
other exception is logged and retried with exponential backoff per key (reset by a
success), so no error is terminal and no key is ever dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from arks_common.errors import RetryableError

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


class SerialQueue(Generic[K]):
    def __init__(
        self,
        handler: Callable[[K], Awaitable[None]],
        *,
        workers: int = 8,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
    ) -> None:
        self._handler = handler
        self._slots = asyncio.Semaphore(workers)
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._due: dict[K, float] = {}
        self._running: set[K] = set()
        self._again: set[K] = set()
        self._failures: dict[K, int] = {}
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, key: K, delay: float = 0.0) -> None:
        """Reconcile `key` after `delay` seconds (0: as soon as a worker is free)."""
        if delay <= 0 and key in self._running:
            self._again.add(key)
            return
        due = time.monotonic() + max(delay, 0.0)
        current = self._due.get(key)
        if current is None or due < current:
            self._due[key] = due
            self._idle.clear()
            self._wakeup.set()

    def pending(self) -> int:
        return len(self._due) + len(self._running)

    async def wait_idle(self) -> None:
        """Until nothing is due now or running (delayed retries do not count)."""
        while True:
            now = time.monotonic()
            busy = self._running or any(due <= now for due in self._due.values())
            if not busy:
                return
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), 0.05)

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch due keys to workers until `stop` is set, then let workers finish."""
        async with asyncio.TaskGroup() as tg:
            while not stop.is_set():
                now = time.monotonic()
                ready = [k for k, due in self._due.items() if due <= now and k not in self._running]
                for key in ready:
                    del self._due[key]
                    self._running.add(key)
                    tg.create_task(self._work(key), name=f"reconcile:{key}")
                if not self._running and not any(d <= now for d in self._due.values()):
                    self._idle.set()
                timeout = min((d for d in self._due.values()), default=now + 0.5) - now
                self._wakeup.clear()
                waiters = [
                    asyncio.ensure_future(self._wakeup.wait()),
                    asyncio.ensure_future(stop.wait()),
                ]
                try:
                    await asyncio.wait(
                        waiters, timeout=max(min(timeout, 0.5), 0.0), return_when="FIRST_COMPLETED"
                    )
                finally:
                    for waiter in waiters:
                        waiter.cancel()

    async def _work(self, key: K) -> None:
        try:
            async with self._slots:
                await self._handler(key)
            self._failures.pop(key, None)
        except RetryableError as exc:
            log.info("reconcile of %s will be retried in %.1fs: %s", key, exc.delay, exc.message)
            self._requeue(key, exc.delay)
        except asyncio.CancelledError:
            raise
        except Exception:
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
            delay = min(self._retry_initial * 2 ** (failures - 1), self._retry_max)
            log.exception(
                "reconcile of %s failed (attempt %d); retrying in %.1fs", key, failures, delay
            )
            self._requeue(key, delay)
        finally:
            self._running.discard(key)
            if key in self._again:
                self._again.discard(key)
                self.add(key)
            self._wakeup.set()

    def _requeue(self, key: K, delay: float) -> None:
        self._running.discard(key)
        self.add(key, delay)
