"""Accountant throughput: usage events applied exactly once per second, against the raw
JetStream consume rate measured in the same run.

Recipe: one nats-server and one Valkey (fsync-always AOF, as `make run`), N usage events
pre-published to ARKS_USAGE across 8 priced quotas (with money budgets, so every event is
priced and counted in nanos), 32 tokens and 4 endpoints, plus 1 in 16 without a quota.

- baseline: one Python process (uvloop) drains the stream with `Bus.consume`, the same
  batch and ack settings as the accountant, doing nothing but ack;
- figure: one real `arks-accountant` process drains it: decode, price, one SETTLE script
  per batch, the durable-ledger write, one BillingRecord per event, acks.

Two rounds of N fresh events each: (1) one accountant process — the headline figure,
next to the raw rate of one process; (2) two accountant processes sharing the durable
consumer, as a deployment would scale out.

Rates are measured from the first to the last event handled. Afterwards every counter is
checked exactly over all rounds: per-quota prompt/response/total/cost, per-token
requests, billing records (one per event), nothing dead-lettered. Targets: >= 20,000
events/s and >= half the raw rate.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from decimal import Decimal
from typing import Any

from bench.common import BenchContext, free_port, process, venv_bin

QUOTAS = 8
TOKENS = 32
ENDPOINTS = 4
TARGET_RATE = 20_000.0
TARGET_RATIO = 0.5


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
        pending = []
        for event in usage:
            pending.append(
                await bus.js.publish_async(
                    subjects.usage_subject(event.namespace, event.endpoint),
                    event.to_bytes(),
                    headers=event.headers(),
                )
            )
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return len(usage) / (time.perf_counter() - started)
    finally:
        await bus.close()


async def _raw_consume(nats_url: str, count: int, batch: int, max_ack_pending: int) -> None:
    """Child process: drain the stream with a second durable, only acking; print the rate."""
    from arks_common import messaging, subjects
    from arks_common.settings import NatsSettings

    bus = await messaging.Bus.connect(NatsSettings(url=nats_url), name="bench-raw")
    stop = asyncio.Event()
    seen = 0
    first = last = 0.0

    async def handle(msgs: Any) -> list[messaging.Disposition]:
        nonlocal seen, first, last
        if not first:
            first = time.perf_counter()
        seen += len(msgs)
        last = time.perf_counter()
        if seen >= count:
            stop.set()
        return [messaging.Ack()] * len(msgs)

    spec = messaging.ConsumerSpec(
        stream=subjects.USAGE_STREAM,
        durable=f"{subjects.ACCOUNTANT_CONSUMER}-raw-baseline",
        filter_subject=subjects.USAGE_ALL,
        batch=batch,
        max_ack_pending=max_ack_pending,
    )
    try:
        await bus.consume(spec, handle, stop=stop)
    finally:
        await bus.close()
    print(json.dumps({"events": seen, "seconds": last - first}), flush=True)


async def _measure_raw(ctx: BenchContext, nats_url: str, count: int) -> float:
    log = ctx.workdir / "raw.log"
    argv = [sys.executable, "-m", "bench.b_accountant", "raw", nats_url, str(count), "500", "5000"]
    async with process(argv, log=log) as proc:
        await asyncio.wait_for(proc.wait(), 300)
    line = log.read_text().strip().splitlines()[-1]
    result = json.loads(line)
    return float(result["events"]) / float(result["seconds"])


async def _measure_accountant(
    ctx: BenchContext,
    nats_url: str,
    redis_url: str,
    count: int,
    processes: int,
    round_: int,
) -> float:
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
    try:
        async with _accountants(ctx, env, processes, round_):
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                done = int(await client.hget(key, "requests") or 0)
                if done > base and not first_at:
                    first_at, first_count = time.perf_counter(), done
                if done >= target:
                    return (done - first_count) / (time.perf_counter() - first_at)
                await asyncio.sleep(0.01)
            raise RuntimeError(f"accountant did not finish: {done - base}/{count}")
    finally:
        await client.aclose()


class _accountants:
    """N `arks-accountant` processes, started together, stopped with SIGTERM."""

    def __init__(self, ctx: BenchContext, env: dict[str, str], n: int, round_: int) -> None:
        self._cms = [
            process(
                [venv_bin("arks-accountant")],
                log=ctx.workdir / f"accountant-{round_}-{i}.log",
                env={**env, "ARKS_HEALTH__PORT": str(free_port())},
            )
            for i in range(n)
        ]

    async def __aenter__(self) -> None:
        for cm in self._cms:
            await cm.__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        for cm in reversed(self._cms):
            await cm.__aexit__(None, None, None)


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


async def run(ctx: BenchContext) -> dict[str, Any]:
    from arks_common.embedded import NatsServer, ValkeyServer

    count = 10_000 if ctx.quick else 40_000
    rounds = [_events(count) for _ in range(2)]
    nats = NatsServer(ctx.workdir / "nats", log_file=ctx.workdir / "nats.log")
    valkey = ValkeyServer(ctx.workdir / "valkey", log_file=ctx.workdir / "valkey.log")
    nats.start()
    valkey.start()
    try:
        publish_rate = await _publish(nats.url, rounds[0])
        ctx.note(f"published {count} usage events at {publish_rate:,.0f}/s")
        raw = await _measure_raw(ctx, nats.url, count)
        ctx.note(f"raw JetStream consume (fetch + ack), 1 process: {raw:,.0f} events/s")
        rate = await _measure_accountant(ctx, nats.url, valkey.url, count, 1, 0)
        ctx.note(f"accountant, 1 process: {rate:,.0f} events/s applied exactly once")
        await _publish(nats.url, rounds[1])
        rate2 = await _measure_accountant(ctx, nats.url, valkey.url, count, 2, 1)
        ctx.note(f"accountant, 2 processes: {rate2:,.0f} events/s applied exactly once")
        check = await _verify(nats.url, valkey.url, [e for r in rounds for e in r])
        ctx.note(f"totals exact over {2 * count} events: {check['exact']} {check['mismatches']}")
    finally:
        valkey.stop()
        nats.stop()
    ratio = rate / raw
    passed = check["exact"] and rate >= TARGET_RATE and ratio >= TARGET_RATIO
    verdict = "PASS" if passed else ("FAIL (totals)" if not check["exact"] else "BELOW TARGET")
    return {
        "headline": (
            f"{rate:,.0f} events/s applied exactly once (1 process) vs {raw:,.0f}/s raw "
            f"JetStream consume ({ratio:.0%}); 2 processes {rate2:,.0f}/s; "
            f"totals exact: {check['exact']}"
        ),
        "verdict": verdict,
        "events_per_round": count,
        "applied_per_s": round(rate),
        "raw_consume_per_s": round(raw),
        "ratio": round(ratio, 3),
        "applied_per_s_2_processes": round(rate2),
        "publish_per_s": round(publish_rate),
        "targets": {"applied_per_s": TARGET_RATE, "ratio": TARGET_RATIO},
        **check,
    }


def _main(argv: list[str]) -> None:
    if argv[:1] == ["raw"]:
        import uvloop

        nats_url, count, batch, pending = argv[1], int(argv[2]), int(argv[3]), int(argv[4])
        uvloop.run(_raw_consume(nats_url, count, batch, pending))
        return
    raise SystemExit("usage: python -m bench.b_accountant raw <nats-url> <count> <batch> <pending>")


if __name__ == "__main__":
    _main(sys.argv[1:])
