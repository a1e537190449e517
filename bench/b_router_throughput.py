"""B2: streaming throughput of one router process pinned to one core, and 1,000
concurrent streaming connections.

Recipe B2 (anchors.md §11): open-loop Poisson arrivals, 1k-token prompts (4,000
characters, unique per request), streaming 16 tokens, full governance on (rpm, rpd,
tpm, tpd and a quota). The rate climbs a ladder; at every step the same load is sent
to the simulator directly first (the baseline, same run, same machine) and then
through the router. A step passes with zero errors and a router TTFT p99 within 50 ms
of the direct TTFT p99. The router's CPU time per request (from /proc, independent of
what else runs on the machine) gives its capacity per core: 1 / (CPU s per request).

Then 1,000 streaming requests are opened at once (simulator at real-time speed, 64
tokens each, so they overlap for about a second): every one must complete with its
[DONE], and every one must produce exactly one usage event.

Cores: router on core 0; the simulator (time scale 20), NATS, Valkey and this load
generator on core 1. On this shared 2-core machine other work may run too: the ladder
reports what it saw, and CPU per request is the robust figure.

python -m bench router_throughput           # ladder 100..300 req/s, 8 s a step; 1,000 streams
python -m bench router_throughput --quick   # 100 and 150 req/s, 4 s a step; 300 streams
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from bench.common import BenchContext, percentile
from bench.router_rig import Load, Outcome, chat_body, rig

TOKEN = "sk-bench-b2"
PROMPT_CHARS = 4000
OUTPUT_TOKENS = 16


def _load_average() -> float:
    """1-minute load average: how busy this shared machine was during the step."""
    with open("/proc/loadavg") as stat:
        return float(stat.read().split()[0])


def _stats(outcomes: list[Outcome]) -> dict[str, float]:
    ok = [o for o in outcomes if o.status == 200]
    ttft = [o.ttft for o in ok]
    latency = [o.latency for o in ok]
    return {
        "errors": len(outcomes) - len(ok),
        "ttft_p50_ms": round(percentile(ttft, 50) * 1000, 2),
        "ttft_p99_ms": round(percentile(ttft, 99) * 1000, 2),
        "latency_p50_ms": round(percentile(latency, 50) * 1000, 2),
        "latency_p99_ms": round(percentile(latency, 99) * 1000, 2),
    }


async def _stream_done(session: aiohttp.ClientSession, url: str, body: bytes) -> bool:
    headers = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    try:
        async with session.post(url + "/v1/chat/completions", data=body, headers=headers) as answer:
            if answer.status != 200:
                return False
            tail = b""
            async for chunk in answer.content.iter_any():
                tail = (tail + chunk)[-64:]
            return tail.rstrip().endswith(b"data: [DONE]")
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False


async def run(ctx: BenchContext) -> dict[str, Any]:
    rates = [100.0, 150.0] if ctx.quick else [100.0, 150.0, 200.0, 250.0, 300.0]
    seconds = 4.0 if ctx.quick else 8.0
    concurrent = 300 if ctx.quick else 1000
    ladder: list[dict[str, Any]] = []
    async with rig(ctx) as r:
        sim = await r.sim("m", time_scale="20", max_num_seqs="2048")
        await r.route("m", [sim])
        await r.quota("b2", total=10**13)
        await r.token(TOKEN, ["m"], quota="b2", rpm=10**7, rpd=10**9, tpm=10**11, tpd=10**13)
        router = await r.router()
        load = Load()
        try:
            # Warm both paths (connections, caches) before measuring.
            warm = [chat_body(PROMPT_CHARS, OUTPUT_TOKENS, stream=True, seed=-i) for i in range(50)]
            for url in (sim, router):
                await load.open_loop(url + "/v1/chat/completions", warm, 50.0, TOKEN)
            seed = 0
            for rate in rates:
                count = int(rate * seconds)
                bodies = [
                    chat_body(PROMPT_CHARS, OUTPUT_TOKENS, stream=True, seed=seed + i)
                    for i in range(count)
                ]
                seed += count
                direct, direct_rate = await load.open_loop(
                    sim + "/v1/chat/completions", bodies, rate, TOKEN
                )
                cpu_before = r.cpu_seconds(router)
                routed, routed_rate = await load.open_loop(
                    router + "/v1/chat/completions", bodies, rate, TOKEN
                )
                cpu_ms = (r.cpu_seconds(router) - cpu_before) / count * 1000
                d, v = _stats(direct), _stats(routed)
                added_p99 = v["ttft_p99_ms"] - d["ttft_p99_ms"]
                step = {
                    "offered_rps": rate,
                    "achieved_rps": round(routed_rate, 1),
                    "direct": {**d, "achieved_rps": round(direct_rate, 1)},
                    "router": v,
                    "added_ttft_p99_ms": round(added_p99, 2),
                    "router_cpu_ms_per_request": round(cpu_ms, 3),
                    "load_average": _load_average(),
                    "passed": v["errors"] == 0 and added_p99 < 50.0,
                }
                ladder.append(step)
                ctx.note(
                    f"{rate:.0f} req/s: router errors {v['errors']}, TTFT p99 "
                    f"{v['ttft_p99_ms']} ms vs direct {d['ttft_p99_ms']} ms, "
                    f"{cpu_ms:.2f} ms CPU/request"
                )
        finally:
            await load.close()

        # 1,000 concurrent streams, long enough to overlap.
        slow = await r.sim("m", time_scale="1", max_num_seqs="2048")
        await r.route("m", [slow])
        await asyncio.sleep(0.5)  # the route change reaches the router through KV
        before_events = await r.usage_count()
        connector = aiohttp.TCPConnector(limit=concurrent + 10)
        timeout = aiohttp.ClientTimeout(total=300)
        started = time.perf_counter()
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            bodies = [chat_body(400, 64, stream=True, seed=10**6 + i) for i in range(concurrent)]
            done = await asyncio.gather(*(_stream_done(session, router, b) for b in bodies))
        burst_s = time.perf_counter() - started
        for _ in range(100):
            if await r.usage_count() - before_events >= concurrent:
                break
            await asyncio.sleep(0.1)
        events = await r.usage_count() - before_events

    passing = [s for s in ladder if s["passed"]]
    best = max((s["offered_rps"] for s in passing), default=0.0)
    cpu = min(s["router_cpu_ms_per_request"] for s in ladder)
    capacity = 1000.0 / cpu if cpu > 0 else 0.0
    completed = sum(done)
    ok = best >= 150.0 and completed == concurrent and events == concurrent
    return {
        "recipe": "B2",
        "cores": "router on core 0; sim (time scale 20), NATS, Valkey, load generator on core 1",
        "workload": f"Poisson open loop, {PROMPT_CHARS}-char (~1k-token) unique prompts, "
        f"streaming {OUTPUT_TOKENS} tokens, governance on",
        "ladder": ladder,
        "highest_passing_rps": best,
        "router_cpu_ms_per_request": cpu,
        "capacity_rps_per_core_from_cpu": round(capacity, 1),
        "concurrent_streams": {
            "opened": concurrent,
            "completed": completed,
            "usage_events": events,
            "seconds": round(burst_s, 2),
        },
        "targets": {"rps_per_core": 150, "concurrent_streams": 1000},
        "headline": f"{best:.0f} req/s passed on one core (CPU {cpu:.2f} ms/request, "
        f"capacity ~{capacity:.0f} req/s); {completed}/{concurrent} concurrent streams",
        "verdict": "PASS" if ok else "MISS",
    }
