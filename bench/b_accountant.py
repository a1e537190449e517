"""Accountant throughput: usage events applied exactly once per second, against the raw
JetStream consume rate measured in the same run.

Recipe: one nats-server and one Valkey (fsync-always AOF, as `make run`), usage events
pre-published to ARKS_USAGE across 8 priced quotas (with money budgets, so every event is
priced and counted in nanos), 32 tokens and 4 endpoints, plus 1 in 16 without a quota.
Every event with a quota has its reservation in Valkey as the router's admission script
leaves it (hash, index entry, reserved total and cost counters), so the accountant
releases one per event as it would in production.
Nothing is published while anything is measured: every measurement drains events that
are already in the stream, and the only other work during it is this process polling one
Valkey hash every 10 ms. Nothing is pinned: NATS, Valkey, the consumer processes and this
process share both cores, as a deployment on a 2-core machine would.

Per repetition (`reps`, fresh events each time):

- raw, nats-py: one process drains the stream with `arks_common.messaging.Bus.consume`
  (nats-py's pull subscription, awaited acks), the batch and ack-pending of the
  accountant's defaults, doing nothing but ack — the project's general-purpose consumer;
- raw, wire: one process drains it with the accountant's own consumption code
  (`arks_accountant.consuming` over `arks_accountant.wire`, same lanes, batch and
  ack-pending), doing nothing but ack — the same client machinery as the figure;
- raw, nats-py link: the same consumption code over `bench/nats_py_hot_path.py` (the
  wire's operations on nats-py's core connection), doing nothing but ack;
- accountant, 1 process: one real `arks-accountant` drains it: decode, price, one SETTLE
  script per batch, the durable-ledger write, one BillingRecord per event confirmed by
  the stream, acks;
- accountant on nats-py, 1 process: the same service with its hot path on nats-py's
  connection (`make_lifespan(hot_path=...)`), on fresh events; the two accountant
  variants alternate which goes first. Issue 11: the wire stays only while this one
  falls below 20,000 events/s;
- then, on another batch of fresh events: raw wire with 2 processes and 2 accountant
  processes sharing the durable consumer, as a deployment would scale out.

Rates are measured from the first to the last event handled; medians over the
repetitions are reported with every sample. During every measurement the CPU time of
each process (consumers, nats-server, valkey-server, this process) is read from /proc,
so the cost per event of each part is reported too. Afterwards every counter is checked
exactly over all events: per-quota prompt/response/total/cost, per-token requests,
billing records (one per event), nothing dead-lettered.

Targets (issue 4): >= 20,000 events/s and >= half the raw rate. Both raw rates are
reported and the ratio to each is stated; the verdict says which one it is against.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from bench.common import BenchContext, free_port, process, venv_bin

QUOTAS = 8
TOKENS = 32
ENDPOINTS = 4
TARGET_RATE = 20_000.0
TARGET_RATIO = 0.5
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _events(n: int) -> list[Any]:
    from arks_common.testing.builders import make_usage_event

    out = []
    for i in range(n):
        quota = None if i % 16 == 15 else f"q{i % QUOTAS}"
        out.append(
            make_usage_event(
                token_name=f"tok-{i % TOKENS}",
                endpoint=f"model-{i % ENDPOINTS}",
                quota=quota,
                quota_period="lifetime" if quota else None,
                prompt_tokens=100 + i % 900,
                cached_tokens=(i % 5) * 20,
                completion_tokens=1 + i % 300,
            )
        )
    return out


def _specs() -> list[Any]:
    from arks_common import events
    from arks_common.testing.builders import make_quota_spec

    prices = [
        events.EndpointPrice(
            endpoint=f"model-{e}",
            prompt=Decimal("0.15") * (e + 1),
            cached_prompt=Decimal("0.075") * (e + 1),
            completion=Decimal("0.6") * (e + 1),
        )
        for e in range(ENDPOINTS)
    ]
    return [
        make_quota_spec(
            name=f"q{q}",
            limits=[events.QuotaLimit(type="total", value=10**15)],
            budget_nanos=10**18,
            prices=prices,
            price_version="bench-v1",
        )
        for q in range(QUOTAS)
    ]


def _consumer_defaults() -> tuple[int, int, int]:
    """(batch, max_ack_pending, lanes) of the accountant's default settings."""
    from arks_accountant.settings import ConsumerSettings

    c = ConsumerSettings()
    return c.batch, c.max_ack_pending, c.lanes


# ----------------------------------------------------------------------------- CPU


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 where /proc is not available)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


class _CpuMeter:
    """CPU seconds of named processes between `start()` and `stop()`."""

    def __init__(self, pids: dict[str, Sequence[int]]) -> None:
        self._pids = pids
        self._start: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        return {name: sum(_cpu_seconds(p) for p in pids) for name, pids in self._pids.items()}

    def start(self) -> None:
        self._start = self._now()

    def stop(self) -> None:
        end = self._now()
        self.used = {name: end[name] - self._start.get(name, 0.0) for name in end}

    def per_event(self, events: int) -> dict[str, float]:
        return {name: round(s / max(events, 1) * 1e6, 1) for name, s in self.used.items()}


# ----------------------------------------------------------------------------- load


async def _publish(nats_url: str, usage: list[Any]) -> float:
    from arks_common import messaging, subjects
    from arks_common.settings import NatsSettings

    bus = await messaging.Bus.connect(NatsSettings(url=nats_url), name="bench-publisher")
    try:
        await bus.ensure_topology()
        kv = await bus.kv(subjects.QUOTAS_BUCKET)
        for spec in _specs():
            await kv.put(subjects.namespaced_key(spec.namespace, spec.name), spec.to_bytes())
        started = time.perf_counter()
        failed: list[Any] = []
        for start in range(0, len(usage), 2000):
            chunk = usage[start : start + 2000]
            pending = [
                await bus.js.publish_async(
                    subjects.usage_subject(event.namespace, event.endpoint),
                    event.to_bytes(),
                    headers=event.headers(),
                )
                for event in chunk
            ]
            results = await asyncio.gather(*pending, return_exceptions=True)
            failed += [e for e, r in zip(chunk, results, strict=True) if isinstance(r, Exception)]
        for event in failed:  # the same message id again: stored once either way
            await bus.publish(subjects.usage_subject(event.namespace, event.endpoint), event)
        return len(usage) / (time.perf_counter() - started)
    finally:
        await bus.close()


_RESERVED_COST = 1_000_000


async def _reserve(redis_url: str, usage: list[Any]) -> None:
    """What the router's admission script leaves for each request with a quota."""
    import redis.asyncio as aioredis

    from arks_common import ledger

    client = aioredis.Redis.from_url(redis_url)
    expires = int(time.time()) + 3600
    try:
        pipe = client.pipeline(transaction=False)
        for n, event in enumerate(usage):
            if event.quota is None:
                continue
            ns, quota, tokens = event.namespace, event.quota, event.reserved_tokens
            pipe.hset(
                ledger.reservation_key(ns, quota, event.id),
                mapping={
                    "period": ledger.LIFETIME,
                    "prompt": 0,
                    "response": 0,
                    "total": tokens,
                    "cost": _RESERVED_COST,
                    "expires": expires,
                },
            )
            pipe.zadd(ledger.reservation_index_key(ns, quota), {event.id: expires})
            pipe.incrby(ledger.reserved_key(ns, quota, ledger.LIFETIME, "total"), tokens)
            pipe.incrby(ledger.reserved_key(ns, quota, ledger.LIFETIME, "cost"), _RESERVED_COST)
            if n % 1000 == 999:
                await pipe.execute()
        await pipe.execute()
    finally:
        await client.aclose()


# ----------------------------------------------------------------------------- raw consumers


class _Drain:
    """Counts acked messages; `stop` is set once `count` were seen, or once the durable
    consumer has nothing left (several processes share the stream's events)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.seen = 0
        self.first = 0.0
        self.last = 0.0
        self.cpu_first = 0.0
        self.cpu_last = 0.0
        self.stop = asyncio.Event()

    def saw(self, n: int) -> None:
        now = time.time()  # wall clock: the parent compares windows across processes
        if not self.first:
            self.first = now
            self.cpu_first = time.process_time()
        self.seen += n
        self.last = now
        self.cpu_last = time.process_time()
        if self.seen >= self.count:
            self.stop.set()

    async def watch(self, bus: Any, stream: str, durable: str) -> None:
        """Stop once the consumer has nothing pending or un-acked (checked every 0.1 s)."""
        import nats.errors
        import nats.js.errors

        while not self.stop.is_set():
            await asyncio.sleep(0.1)
            try:
                info = await bus.js.consumer_info(stream, durable)
            except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
                continue
            if not info.num_pending and not info.num_ack_pending:
                self.stop.set()

    def report(self) -> None:
        cpu = self.cpu_last - self.cpu_first
        print(
            json.dumps({"events": self.seen, "first": self.first, "last": self.last, "cpu": cpu}),
            flush=True,
        )


async def _raw_nats_py(nats_url: str, count: int, batch: int, max_ack_pending: int) -> None:
    """Child process: drain with `Bus.consume` (nats-py), only acking; print the rate."""
    from arks_common import messaging, subjects
    from arks_common.settings import NatsSettings

    bus = await messaging.Bus.connect(NatsSettings(url=nats_url), name="bench-raw")
    drain = _Drain(count)

    async def handle(msgs: Any) -> list[messaging.Disposition]:
        drain.saw(len(msgs))
        return [messaging.Ack()] * len(msgs)

    spec = messaging.ConsumerSpec(
        stream=subjects.USAGE_STREAM,
        durable=f"{subjects.ACCOUNTANT_CONSUMER}-raw-baseline",
        filter_subject=subjects.USAGE_ALL,
        batch=batch,
        max_ack_pending=max_ack_pending,
    )
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(drain.watch(bus, spec.stream, spec.durable))
            await bus.consume(spec, handle, stop=drain.stop)
    finally:
        await bus.close()
    drain.report()


async def _raw_wire(
    nats_url: str, count: int, batch: int, max_ack_pending: int, lanes: int, link: bool = False
) -> None:
    """Child process: drain with the accountant's consumer lanes over its wire (or, with
    `link`, over nats-py's connection), only acking."""
    from typing import cast

    from arks_accountant.consuming import consume_lane, ensure_consumer
    from arks_accountant.wire import Wire
    from arks_common import messaging, subjects
    from arks_common.settings import NatsSettings
    from bench.nats_py_hot_path import NatsLink

    settings = NatsSettings(url=nats_url)
    bus = await messaging.Bus.connect(settings, name="bench-raw-wire")
    wire = cast(Wire, NatsLink(bus.nc)) if link else Wire(settings.servers, name="bench-raw-wire")
    await wire.connect(10)
    drain = _Drain(count)
    ack = messaging.Ack()

    async def handle(msgs: Any) -> list[messaging.Disposition]:
        drain.saw(len(msgs))
        return [ack] * len(msgs)

    spec = messaging.ConsumerSpec(
        stream=subjects.USAGE_STREAM,
        durable=f"{subjects.ACCOUNTANT_CONSUMER}-raw-{'link' if link else 'wire'}",
        filter_subject=subjects.USAGE_ALL,
        batch=batch,
        max_ack_pending=max_ack_pending,
    )
    try:
        await ensure_consumer(bus, spec)
        keeper_stop = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            keeper = tg.create_task(wire.run(keeper_stop))
            tg.create_task(drain.watch(bus, spec.stream, spec.durable))
            async with asyncio.TaskGroup() as lane_group:
                for _ in range(lanes):
                    lane_group.create_task(
                        consume_lane(
                            wire,
                            bus,
                            spec,
                            handle,
                            drain.stop,
                            inbox=wire.new_inbox(),
                        )
                    )
            keeper_stop.set()
            await keeper
    finally:
        await wire.close()
        await bus.close()
    drain.report()


async def _measure_raw(
    ctx: BenchContext, kind: str, nats_url: str, count: int, processes: int, tag: str
) -> tuple[float, _CpuMeter]:
    """Run `processes` raw consumers of `kind` until they drained `count` events together."""
    batch, pending, lanes = _consumer_defaults()
    argv = [sys.executable, "-m", "bench.b_accountant", kind, nats_url, str(count)]
    argv += [str(batch), str(pending), str(lanes)]
    logs = [ctx.workdir / f"raw-{kind}-{tag}-{i}.log" for i in range(processes)]
    cms = [process(argv, log=log) for log in logs]
    procs = [await cm.__aenter__() for cm in cms]
    meter = _CpuMeter({"consumers": [p.pid for p in procs], **_server_pids()})
    meter.start()
    try:
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), 300)
    finally:
        meter.stop()
        for cm in cms:
            await cm.__aexit__(None, None, None)
    results = [json.loads(log.read_text().strip().splitlines()[-1]) for log in logs]
    results = [r for r in results if int(r["events"])]  # one may have found nothing left
    events = sum(int(r["events"]) for r in results)
    if events < count:
        raise RuntimeError(f"raw {kind} consumers drained {events} of {count} events")
    # the processes drain in parallel: from the first event any of them saw to the last
    seconds = max(float(r["last"]) for r in results) - min(float(r["first"]) for r in results)
    # the consumers have exited: their own report says what they spent while draining
    meter.used["consumers"] = sum(float(r["cpu"]) for r in results)
    return events / seconds, meter


# ----------------------------------------------------------------------------- accountants


_SERVER_PIDS: dict[str, int] = {}


def _server_pids() -> dict[str, list[int]]:
    """The servers' and this process's pids, for CPU accounting."""
    return {
        "nats": [_SERVER_PIDS["nats"]],
        "valkey": [_SERVER_PIDS["valkey"]],
        "bench": [os.getpid()],
    }


async def _measure_accountant(
    ctx: BenchContext,
    nats_url: str,
    redis_url: str,
    count: int,
    processes: int,
    tag: str,
    transport: str = "wire",
) -> tuple[float, _CpuMeter]:
    import redis.asyncio as aioredis

    from arks_accountant import keys

    client = aioredis.Redis.from_url(redis_url)
    key = keys.namespace_usage_key("default")
    env = {
        "ARKS_NATS__URL": nats_url,
        "ARKS_REDIS__URL": redis_url,
        "ARKS_STATUS__WRITER": "none",
        "ARKS_TELEMETRY__LOG_LEVEL": "WARNING",
    }
    base = int(await client.hget(key, "requests") or 0)
    target = base + count
    first_at = 0.0
    first_count = base
    argv = (
        [venv_bin("arks-accountant")]
        if transport == "wire"
        else [sys.executable, "-m", "bench.b_accountant", "accountant-nats-py"]
    )
    cms = [
        process(
            argv,
            log=ctx.workdir / f"accountant-{transport}-{tag}-{i}.log",
            env={**env, "ARKS_HEALTH__PORT": str(free_port())},
        )
        for i in range(processes)
    ]
    procs = [await cm.__aenter__() for cm in cms]
    meter = _CpuMeter({"consumers": [p.pid for p in procs], **_server_pids()})
    try:
        deadline = time.monotonic() + 600
        done = base
        while time.monotonic() < deadline:
            done = int(await client.hget(key, "requests") or 0)
            if done > base and not first_at:
                first_at, first_count = time.perf_counter(), done
                meter.start()
            if done >= target:
                meter.stop()
                return (done - first_count) / (time.perf_counter() - first_at), meter
            await asyncio.sleep(0.01)
        raise RuntimeError(f"accountant did not finish: {done - base}/{count}")
    finally:
        for cm in reversed(cms):
            await cm.__aexit__(None, None, None)
        await client.aclose()


# ----------------------------------------------------------------------------- checks


async def _verify(nats_url: str, redis_url: str, usage: list[Any]) -> dict[str, Any]:
    import redis.asyncio as aioredis

    from arks_accountant import keys
    from arks_accountant.pricing import PriceList, charge
    from arks_common import ledger, messaging, subjects
    from arks_common.settings import NatsSettings

    specs = {s.name: s for s in _specs()}
    want: dict[str, Counter[str]] = {}
    tokens: Counter[str] = Counter()
    for event in usage:
        tokens[event.token_name] += 1
        if event.quota is None:
            continue
        c = want.setdefault(event.quota, Counter())
        c["prompt"] += event.prompt_tokens
        c["response"] += event.completion_tokens
        c["total"] += event.total_tokens
        c["cost"] += charge(event, PriceList.of(specs[event.quota])).nanos
    client = aioredis.Redis.from_url(redis_url)
    mismatches: list[str] = []
    try:
        for quota, counts in want.items():
            for kind, value in counts.items():
                got = int(
                    await client.get(ledger.used_key("default", quota, "lifetime", kind)) or 0
                )
                if got != value:
                    mismatches.append(f"{quota}/{kind}: {got} != {value}")
        for token, n in tokens.items():
            got = int(await client.hget(keys.token_usage_key("default", token), "requests") or 0)
            if got != n:
                mismatches.append(f"token {token}: {got} requests != {n}")
        for quota in want:
            for kind in ("total", "cost"):
                key = ledger.reserved_key("default", quota, ledger.LIFETIME, kind)
                left = int(await client.get(key) or 0)
                if left:
                    mismatches.append(f"{quota}: {left} {kind} still reserved")
            index = await client.zcard(ledger.reservation_index_key("default", quota))
            if index:
                mismatches.append(f"{quota}: {index} reservations not released")
    finally:
        await client.aclose()
    bus = await messaging.Bus.connect(NatsSettings(url=nats_url), name="bench-verify")
    try:
        billing = (await bus.js.stream_info(subjects.BILLING_STREAM)).state.messages
        dead = (await bus.js.stream_info(subjects.DLQ_STREAM)).state.messages
    finally:
        await bus.close()
    if billing != len(usage):
        mismatches.append(f"billing records: {billing} != {len(usage)}")
    if dead:
        mismatches.append(f"{dead} dead-lettered")
    return {"exact": not mismatches, "mismatches": mismatches[:20], "billing_records": billing}


# ----------------------------------------------------------------------------- the run


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def _fmt(samples: list[float]) -> str:
    return ", ".join(f"{s:,.0f}" for s in samples)


async def run(ctx: BenchContext) -> dict[str, Any]:
    from arks_common.embedded import NatsServer, ValkeyServer

    count = 10_000 if ctx.quick else 40_000
    reps = 1 if ctx.quick else 3
    batch, pending, lanes = _consumer_defaults()
    ctx.note(
        f"{count} events per measurement, {reps} repetitions; consumer batch {batch}, "
        f"max ack pending {pending}, {lanes} lanes per process; 2 cores, nothing pinned"
    )
    nats = NatsServer(ctx.workdir / "nats", log_file=ctx.workdir / "nats.log")
    valkey = ValkeyServer(ctx.workdir / "valkey", log_file=ctx.workdir / "valkey.log")
    nats.start()
    valkey.start()
    assert nats.proc is not None
    assert valkey.proc is not None
    _SERVER_PIDS.update(nats=nats.proc.pid, valkey=valkey.proc.pid)
    published: list[Any] = []
    samples: dict[str, list[float]] = {
        "raw_nats_py": [],
        "raw_wire": [],
        "raw_link": [],
        "accountant_1": [],
        "accountant_1_nats_py": [],
        "raw_wire_2": [],
        "accountant_2": [],
    }
    cpu: dict[str, dict[str, float]] = {}
    try:
        for rep in range(reps):
            usage = _events(count)
            published += usage
            await _publish(nats.url, usage)
            await _reserve(valkey.url, usage)
            raw, meter = await _measure_raw(ctx, "raw", nats.url, count, 1, f"{rep}")
            samples["raw_nats_py"].append(raw)
            cpu["raw_nats_py_1"] = meter.per_event(count)
            raw_wire, meter = await _measure_raw(ctx, "raw-wire", nats.url, count, 1, f"{rep}")
            samples["raw_wire"].append(raw_wire)
            cpu["raw_wire_1"] = meter.per_event(count)
            raw_link, meter = await _measure_raw(ctx, "raw-link", nats.url, count, 1, f"{rep}")
            samples["raw_link"].append(raw_link)
            cpu["raw_link_1"] = meter.per_event(count)
            # the two accountant variants alternate which goes first
            order = ["wire", "nats-py"] if rep % 2 == 0 else ["nats-py", "wire"]
            for i, transport in enumerate(order):
                if i:  # fresh events for the second variant
                    usage = _events(count)
                    published += usage
                    await _publish(nats.url, usage)
                    await _reserve(valkey.url, usage)
                name = "accountant_1" if transport == "wire" else "accountant_1_nats_py"
                rate, meter = await _measure_accountant(
                    ctx, nats.url, valkey.url, count, 1, f"1-{rep}", transport
                )
                samples[name].append(rate)
                cpu[name] = meter.per_event(count)
            ctx.note(
                f"rep {rep + 1}: raw nats-py {raw:,.0f}/s, raw wire {raw_wire:,.0f}/s, raw "
                f"link {raw_link:,.0f}/s, accountant (1 process) wire "
                f"{samples['accountant_1'][-1]:,.0f}/s, nats-py "
                f"{samples['accountant_1_nats_py'][-1]:,.0f}/s; CPU µs/event "
                f"{cpu['accountant_1']} / {cpu['accountant_1_nats_py']}"
            )
        for rep in range(reps):
            usage = _events(count)
            published += usage
            await _publish(nats.url, usage)
            await _reserve(valkey.url, usage)
            raw2, meter = await _measure_raw(ctx, "raw-wire", nats.url, count, 2, f"2-{rep}")
            samples["raw_wire_2"].append(raw2)
            cpu["raw_wire_2"] = meter.per_event(count)
            rate2, meter = await _measure_accountant(
                ctx, nats.url, valkey.url, count, 2, f"2-{rep}"
            )
            samples["accountant_2"].append(rate2)
            cpu["accountant_2"] = meter.per_event(count)
            ctx.note(
                f"rep {rep + 1}: raw wire (2 processes) {raw2:,.0f}/s, accountant "
                f"(2 processes) {rate2:,.0f}/s; CPU µs/event {cpu['accountant_2']}"
            )
        check = await _verify(nats.url, valkey.url, published)
        ctx.note(
            f"totals exact over {len(published)} events: {check['exact']} {check['mismatches']}"
        )
    finally:
        valkey.stop()
        nats.stop()
    med = {name: _median(values) for name, values in samples.items()}
    rate, rate2 = med["accountant_1"], med["accountant_2"]
    best = max(rate, rate2)
    ratio_py = rate / med["raw_nats_py"]
    ratio_wire = rate / med["raw_wire"]
    ratio2_wire = rate2 / med["raw_wire_2"]
    meets_rate = best >= TARGET_RATE
    if not check["exact"]:
        verdict = "FAIL (totals)"
    elif meets_rate and ratio_py >= TARGET_RATIO:
        verdict = (
            f"PASS against the nats-py raw rate ({ratio_py:.0%}); against the raw rate of the "
            f"accountant's own lean consumer {ratio_wire:.0%} (below half)"
            if ratio_wire < TARGET_RATIO
            else "PASS"
        )
    else:
        verdict = "BELOW TARGET"
    return {
        "headline": (
            f"{rate:,.0f} events/s applied exactly once by 1 process, {rate2:,.0f}/s by 2 "
            f"(medians of {reps}); raw consume, 1 process: nats-py {med['raw_nats_py']:,.0f}/s "
            f"({ratio_py:.0%}), lean wire {med['raw_wire']:,.0f}/s ({ratio_wire:.0%}); "
            f"hot path on nats-py's connection: {med['accountant_1_nats_py']:,.0f}/s by 1 "
            f"process, raw {med['raw_link']:,.0f}/s; "
            f"totals exact: {check['exact']}"
        ),
        "verdict": verdict,
        "events_per_measurement": count,
        "repetitions": reps,
        "consumer": {"batch": batch, "max_ack_pending": pending, "lanes": lanes},
        "applied_per_s": round(rate),
        "applied_per_s_2_processes": round(rate2),
        "raw_consume_per_s": round(med["raw_nats_py"]),
        "raw_wire_consume_per_s": round(med["raw_wire"]),
        "raw_wire_consume_per_s_2_processes": round(med["raw_wire_2"]),
        "raw_link_consume_per_s": round(med["raw_link"]),
        "applied_per_s_nats_py": round(med["accountant_1_nats_py"]),
        "ratio": round(ratio_py, 3),
        "ratio_vs_raw_wire": round(ratio_wire, 3),
        "ratio_2_processes_vs_raw_wire_2": round(ratio2_wire, 3),
        "samples_per_s": {name: [round(v) for v in values] for name, values in samples.items()},
        "samples": {name: _fmt(values) for name, values in samples.items()},
        "cpu_us_per_event_last_rep": cpu,
        "targets": {"applied_per_s": TARGET_RATE, "ratio": TARGET_RATIO},
        **check,
    }


def _accountant_nats_py() -> None:
    """Child process: `arks-accountant` (same settings from the environment, same GC
    tuning) with its hot path on nats-py's connection."""
    from typing import cast

    from arks_accountant.__main__ import main
    from arks_accountant.wire import Wire
    from arks_common.messaging import Bus
    from bench.nats_py_hot_path import NatsLink

    def hot_path(bus: Bus) -> Wire:
        return cast(Wire, NatsLink(bus.nc))

    main(hot_path=hot_path)


def _main(argv: list[str]) -> None:
    import uvloop

    if argv == ["accountant-nats-py"]:
        _accountant_nats_py()
        return

    if argv[:1] == ["raw"] and len(argv) >= 5:
        nats_url, count, batch, pending = argv[1], int(argv[2]), int(argv[3]), int(argv[4])
        uvloop.run(_raw_nats_py(nats_url, count, batch, pending))
        return
    if argv[:1] in (["raw-wire"], ["raw-link"]) and len(argv) == 6:
        nats_url, count, batch, pending, lanes = argv[1], *map(int, argv[2:6])
        uvloop.run(_raw_wire(nats_url, count, batch, pending, lanes, argv[0] == "raw-link"))
        return
    raise SystemExit(
        "usage: python -m bench.b_accountant raw|raw-wire <nats-url> <count> <batch> "
        "<pending> [<lanes>]"
    )


if __name__ == "__main__":
    _main(sys.argv[1:])
