"""The engine: one scheduler loop stepping a continuously batched set of sequences.

Each step, as vLLM V1 schedules it:
1. Running sequences first, in admission order: a decoding one takes 1 token of the
   step's budget (`max_num_batched_tokens`), a prefilling one the next chunk of its
   uncomputed prompt. A sequence that needs a KV block when none is free preempts the
   most recently admitted running one (its blocks are freed; it goes back to the head of
   the queue and recomputes), possibly itself.
2. If nothing was preempted, waiting sequences are admitted first-come first-served while
   the budget lasts, fewer than `max_num_seqs` run, and KV blocks for their first chunk
   exist (after reusing cached prefix blocks); the first that does not fit stops
   admission, so a full cache makes the queue grow.
3. The step lasts `step_base + decode_per_seq x decoders + prefill_per_token x prefill
   tokens` (divided by the TP speed-up, with optional jitter and stall faults), scaled by
   `time_scale`. The loop sleeps until the step's deadline on a virtual clock (late
   wake-ups are caught up, so coarse timers do not slow the model down; when the process
   falls behind by more than `_MAX_CATCH_UP` the model slows down instead, as an
   overloaded engine would).
4. At the deadline every sequence whose context is now computed emits one token, and
   the HTTP handlers waiting on it are woken (streaming ones per token, others at the
   end). Finished sequences release their KV blocks to the prefix cache.

A request with `n` > 1 is n sequences. Only the first is queued; when its prompt is
computed the others fork from it, as parallel sampling does: they share its full prompt
blocks (reference-counted), copy the partial last one, and emit their first token in
the same step. A fork that finds no free slot or block waits at the head of the queue
and recomputes only what the prefix cache lacks. The prompt counts once (prompt tokens,
prefix-cache queries and hits); every sequence counts as a finished request.

The loop never blocks and never raises on request data (requests are validated before
`submit`); aborting a request (client gone) is O(queue length).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from dataclasses import dataclass, field

from arks_engine_sim.generating import FinishReason, OutputPlan
from arks_engine_sim.kv_caching import BlockPool
from arks_engine_sim.metrics import EngineStats
from arks_engine_sim.settings import SimSettings

_MAX_CATCH_UP = 0.02


class Waker:
    """Wakes the HTTP handler waiting on one or several sequences (the n choices of a
    request share one)."""

    __slots__ = ("waiter",)

    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] | None = None

    async def wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self.waiter = waiter
        await waiter

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)


class SimRequest:
    """One sequence's state, shared by its HTTP handler and the scheduler."""

    __slots__ = (
        "aborted",
        "arrival",
        "block_hashes",
        "blocks",
        "cached_tokens",
        "computed",
        "done",
        "finish_reason",
        "finished_at",
        "first_token_at",
        "forks",
        "generated",
        "hang_at",
        "hashed_blocks",
        "last_token_at",
        "max_new",
        "plan",
        "prompt_counted",
        "prompt_len",
        "scheduled_at",
        "stream",
        "waker",
    )

    def __init__(
        self,
        *,
        prompt_len: int,
        block_hashes: list[int],
        plan: OutputPlan | None,
        stream: bool,
        arrival: float,
        hang_at: int | None = None,
        waker: Waker | None = None,
    ) -> None:
        self.prompt_len = prompt_len
        self.block_hashes = block_hashes
        self.plan = plan
        self.max_new = plan.count if plan is not None else 0
        self.finish_reason: str = plan.engine_reason if plan is not None else "stop"
        self.stream = stream
        self.arrival = arrival
        self.hang_at = hang_at
        self.generated = 0
        self.computed = 0
        self.cached_tokens = 0
        self.hashed_blocks = 0
        self.blocks: list[int] = []
        self.prompt_counted = False
        self.scheduled_at: float | None = None
        self.first_token_at: float | None = None
        self.last_token_at = 0.0
        self.finished_at: float | None = None
        self.done = False
        self.aborted = False
        self.waker = waker or Waker()
        # Sibling sequences (n > 1) that start when this one's prompt is computed.
        self.forks: list[SimRequest] = []

    async def wait(self) -> None:
        """Until the scheduler has news (a token for streams; the end for the others)."""
        if self.done:
            return
        await self.waker.wait()

    def wake(self) -> None:
        self.waker.wake()


@dataclass
class _Step:
    decodes: list[SimRequest] = field(default_factory=list)
    prefills: list[tuple[SimRequest, int]] = field(default_factory=list)
    prefill_tokens: int = 0


class Engine:
    def __init__(self, settings: SimSettings, stats: EngineStats) -> None:
        self.settings = settings
        self.stats = stats
        self.pool = BlockPool(
            settings.num_kv_blocks,
            settings.block_size,
            prefix_caching=settings.enable_prefix_caching,
        )
        self.waiting: deque[SimRequest] = deque()
        self.running: list[SimRequest] = []
        self._wakeup = asyncio.Event()
        self._rng = random.Random(settings.seed ^ 0x5EED)
        self._scale = 1.0 / (1000.0 * settings.time_scale * settings.speedup)
        self._spike = settings.fault_spike_ms / (1000.0 * settings.time_scale)

    # -- gauges (read by /metrics) ------------------------------------------------------
    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def kv_usage(self) -> float:
        return self.pool.usage

    @property
    def kv_used_tokens(self) -> int:
        return self.pool.num_used * self.pool.block_size

    @property
    def capacity_tokens(self) -> int:
        return self.pool.num_blocks * self.pool.block_size

    # -- requests -----------------------------------------------------------------------
    def submit(self, request: SimRequest) -> None:
        self.waiting.append(request)
        self._wakeup.set()

    def abort(self, request: SimRequest) -> None:
        """The client went away: drop the sequence wherever it is and free its blocks."""
        if request.done:
            return
        if request in self.waiting:
            self.waiting.remove(request)
        elif request in self.running:
            self.running.remove(request)
        request.aborted = True
        self._finish(request, time.monotonic(), "abort")

    # -- the loop -----------------------------------------------------------------------
    async def run(self) -> None:
        now = time.monotonic
        clock = now()
        while True:
            if not self.running and not self.waiting:
                self._wakeup.clear()
                await self._wakeup.wait()
                clock = now()
            started = now()
            start = max(clock, started - _MAX_CATCH_UP)
            step = self._schedule(started)
            clock = start + self._duration(step)
            delay = clock - now()
            # Always yield, even when late, so handlers can write what they have.
            await asyncio.sleep(delay if delay > 0 else 0)
            self._apply(step, now())

    def _duration(self, step: _Step) -> float:
        s = self.settings
        if not step.decodes and not step.prefills:
            # Only hung sequences: idle until something changes, without spinning.
            return s.step_base_ms * self._scale
        ms = (
            s.step_base_ms
            + s.decode_ms_per_seq * len(step.decodes)
            + s.prefill_ms_per_token * step.prefill_tokens
        )
        seconds = ms * self._scale
        if s.step_jitter:
            seconds *= max(0.0, 1.0 + self._rng.gauss(0.0, s.step_jitter))
        if s.fault_spike_rate and self._rng.random() < s.fault_spike_rate:
            self.stats.fault("spike")
            seconds += self._spike
        return seconds

    def _ensure_blocks(self, request: SimRequest, tokens: int) -> bool:
        missing = self.pool.blocks_for(tokens) - len(request.blocks)
        if missing <= 0:
            return True
        blocks = self.pool.allocate(missing)
        if blocks is None:
            return False
        request.blocks.extend(blocks)
        return True

    def _preempt_last(self) -> SimRequest:
        victim = self.running.pop()
        self.pool.release(victim.blocks)
        victim.blocks = []
        victim.computed = 0
        victim.hashed_blocks = 0
        self.waiting.appendleft(victim)
        self.stats.preemptions += 1
        return victim

    def _schedule(self, now: float) -> _Step:
        step = _Step()
        budget = self.settings.max_num_batched_tokens
        running = self.running
        preempted = False
        index = 0
        while index < len(running) and budget > 0:
            request = running[index]
            if request.hang_at is not None and request.generated >= request.hang_at:
                index += 1
                continue
            context = request.prompt_len + request.generated
            chunk = min(context - request.computed, budget)
            while not self._ensure_blocks(request, request.computed + chunk):
                preempted = True
                if self._preempt_last() is request:
                    chunk = 0
                    break
            if chunk == 0:
                continue  # the request itself was preempted; `index` now points past it
            budget -= chunk
            if request.computed >= request.prompt_len and chunk == 1:
                step.decodes.append(request)
            else:
                step.prefills.append((request, chunk))
                step.prefill_tokens += chunk
            index += 1
        if not preempted:
            budget = self._admit(step, budget, now)
        return step

    def _admit(self, step: _Step, budget: int, now: float) -> int:
        pool = self.pool
        waiting = self.waiting
        max_seqs = self.settings.max_num_seqs
        block_size = pool.block_size
        while waiting and budget > 0 and len(self.running) < max_seqs:
            request = waiting[0]
            context = request.prompt_len + request.generated
            # At least one token is always computed, as in vLLM, so a fully cached prompt
            # still produces its first token from a (tiny) prefill.
            hits = pool.match(request.block_hashes, (context - 1) // block_size)
            cached = len(hits) * block_size
            chunk = min(context - cached, budget)
            new_blocks = pool.blocks_for(cached + chunk) - len(hits)
            if not pool.can_allocate(new_blocks, hits):
                break
            waiting.popleft()
            pool.take(hits)
            allocated = pool.allocate(new_blocks)
            if allocated is None:  # pragma: no cover - guarded by can_allocate
                raise AssertionError("KV pool refused an allocation it had accepted")
            request.blocks = [*hits, *allocated]
            request.computed = cached
            request.hashed_blocks = len(hits)
            if request.scheduled_at is None:
                request.scheduled_at = now
                request.cached_tokens = cached
                self.stats.prefix_queries += request.prompt_len
                self.stats.prefix_hits += cached
            self.running.append(request)
            step.prefills.append((request, chunk))
            step.prefill_tokens += chunk
            budget -= chunk
        return budget

    def _apply(self, step: _Step, now: float) -> None:
        stats = self.stats
        tokens = len(step.decodes) + step.prefill_tokens
        if tokens:
            stats.iteration_tokens.observe(tokens)
        for request in step.decodes:
            if not request.done:
                request.computed += 1
                self._emit(request, now)
        for request, chunk in step.prefills:
            if request.done:
                continue
            request.computed += chunk
            self._register(request)
            if request.computed < request.prompt_len + request.generated:
                continue
            if not request.prompt_counted:
                request.prompt_counted = True
                stats.prompt_tokens += request.prompt_len
            if request.forks:
                # Before the parent emits: if that ends it, its blocks are released.
                self._fork(request, now)
            if request.max_new == 0:
                self._finish(request, now, "stop")
            else:
                self._emit(request, now)
        if any(r.done for r in self.running):
            self.running = [r for r in self.running if not r.done]

    def _fork(self, parent: SimRequest, now: float) -> None:
        """Start the parent's siblings on its computed prompt (see the module doc)."""
        forks, parent.forks = parent.forks, []
        pool = self.pool
        full = parent.prompt_len // pool.block_size
        shared = parent.blocks[:full]
        partial = parent.prompt_len % pool.block_size != 0
        queued: list[SimRequest] = []
        for child in forks:
            if child.done:
                continue  # aborted before it started
            child.scheduled_at = parent.scheduled_at
            child.cached_tokens = parent.cached_tokens
            child.prompt_counted = True
            tail = pool.allocate(1) if partial else []
            if tail is None or len(self.running) >= self.settings.max_num_seqs:
                if tail:
                    pool.release(tail)
                queued.append(child)
                continue
            pool.take(shared)
            child.blocks = [*shared, *tail]
            child.computed = parent.prompt_len
            child.hashed_blocks = min(parent.hashed_blocks, full)
            self.running.append(child)
            if child.max_new == 0:
                self._finish(child, now, "stop")
            else:
                self._emit(child, now)
        self.waiting.extendleft(reversed(queued))

    def _register(self, request: SimRequest) -> None:
        full = min(request.computed // self.pool.block_size, len(request.block_hashes))
        for i in range(request.hashed_blocks, full):
            self.pool.register(request.blocks[i], request.block_hashes[i])
        if full > request.hashed_blocks:
            request.hashed_blocks = full

    def _emit(self, request: SimRequest, now: float) -> None:
        if request.hang_at is not None and request.generated >= request.hang_at:
            return  # hung: holds its slot and blocks until the client gives up
        request.generated += 1
        stats = self.stats
        stats.generation_tokens += 1
        if request.first_token_at is None:
            request.first_token_at = now
            if not request.stream:
                # Streams record TTFT when the first chunk is written (see app.py).
                stats.ttft.observe(now - request.arrival)
        else:
            stats.itl.observe(now - request.last_token_at)
        request.last_token_at = now
        if request.generated >= request.max_new:
            self._finish(request, now, request.finish_reason)
        elif request.stream:
            request.wake()

    def _finish(self, request: SimRequest, now: float, reason: FinishReason | str) -> None:
        request.done = True
        request.finished_at = now
        if reason == "abort":
            request.finish_reason = "abort"
        self.pool.release(request.blocks)
        request.blocks = []
        stats = self.stats
        stats.finished[reason] = stats.finished.get(reason, 0) + 1
        if request.max_new > 0 and reason != "abort":
            stats.e2e.observe(now - request.arrival)
            stats.generation_len.observe(request.generated)
            stats.prompt_len.observe(request.prompt_len)
            scheduled = request.scheduled_at if request.scheduled_at is not None else now
            first = request.first_token_at if request.first_token_at is not None else now
            stats.queue_time.observe(scheduled - request.arrival)
            stats.prefill_time.observe(first - scheduled)
            stats.decode_time.observe(now - first)
            stats.inference_time.observe(now - scheduled)
            if request.generated > 1:
                stats.tpot_request.observe((now - first) / (request.generated - 1))
        request.wake()
