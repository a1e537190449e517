"""B1: latency the router adds, with full governance on, versus LiteLLM's proxy.

Recipe B1 (anchors.md §11): a near-zero-latency upstream (engine-sim at time scale
1000), 15 warm-up requests, then 7 rounds x 25 sequential requests per target; the
figure is the median of the round medians and the p99 of all samples, minus the same
figures measured directly against the simulator. Targets are interleaved round by
round (direct, router, LiteLLM, direct, ...) so drift on this shared machine hits them
alike. Requests: non-streaming chat, ~100-token prompt, 16 tokens out, keep-alive.

The router runs pinned to core 0 with every limit of a grant (rpm, rpd, tpm, tpd) and
a quota with token and money budgets, so each request runs the admission script, the
settlement script and publishes a usage event. LiteLLM runs pinned to core 0 with a
master key only (no database here, so no virtual keys or budgets). Simulator, brokers
and this load generator share core 1.

python -m bench router            # 7 rounds x 25
python -m bench router --quick    # 3 rounds x 10
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import aiohttp

from bench.common import BenchContext, percentile
from bench.router_rig import (
    LITELLM_KEY,
    chat_body,
    ensure_litellm,
    rig,
    start_litellm,
)

TOKEN = "sk-bench-b1"


async def _one(session: aiohttp.ClientSession, url: str, body: bytes, key: str | None) -> float:
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    started = time.perf_counter()
    async with session.post(url + "/v1/chat/completions", data=body, headers=headers) as answer:
        await answer.read()
        if answer.status != 200:
            raise RuntimeError(f"{url} answered {answer.status}: {await answer.text()}")
    return time.perf_counter() - started


def _summary(rounds: list[list[float]]) -> dict[str, float]:
    samples = [s for r in rounds for s in r]
    return {
        "median_of_round_medians_ms": statistics.median(statistics.median(r) for r in rounds)
        * 1000,
        "p99_ms": percentile(samples, 99) * 1000,
        "samples": len(samples),
    }


async def run(ctx: BenchContext) -> dict[str, Any]:
    rounds, per_round, warmup = (3, 10, 5) if ctx.quick else (7, 25, 15)
    body = chat_body(400, 16, stream=False)
    async with rig(ctx) as r:
        sim = await r.sim("m", time_scale="1000")
        await r.route("m", [sim])
        await r.quota("b1", total=10**12, prompt=10**12)
        await r.token(TOKEN, ["m"], quota="b1", rpm=10**6, rpd=10**8, tpm=10**9, tpd=10**11)
        router = await r.router()
        targets: dict[str, tuple[str, str | None]] = {
            "direct": (sim, None),
            "router": (router, TOKEN),
        }
        litellm_script = await ensure_litellm(ctx)
        if litellm_script is not None:
            targets["litellm"] = (await start_litellm(r, litellm_script, sim), LITELLM_KEY)
        timings: dict[str, list[list[float]]] = {name: [] for name in targets}
        before = r.cpu_seconds(router)
        connector = aiohttp.TCPConnector(limit=4, keepalive_timeout=60)
        async with aiohttp.ClientSession(connector=connector) as session:
            for url, key in targets.values():
                for _ in range(warmup):
                    await _one(session, url, body, key)
            for _ in range(rounds):
                for name, (url, key) in targets.items():
                    timings[name].append(
                        [await _one(session, url, body, key) for _ in range(per_round)]
                    )
        router_cpu_ms = (r.cpu_seconds(router) - before) / (warmup + rounds * per_round) * 1000
        published = await r.usage_count()

    summary = {name: _summary(rounds_) for name, rounds_ in timings.items()}
    direct = summary["direct"]
    added = {
        name: {
            "median_ms": round(
                s["median_of_round_medians_ms"] - direct["median_of_round_medians_ms"], 3
            ),
            "p99_ms": round(s["p99_ms"] - direct["p99_ms"], 3),
        }
        for name, s in summary.items()
        if name != "direct"
    }
    ours = added["router"]
    theirs = added.get("litellm")
    ok = ours["median_ms"] <= 2.0 and ours["p99_ms"] <= 5.0
    if theirs is not None:
        ok = ok and ours["median_ms"] < theirs["median_ms"]
    headline = f"router adds {ours['median_ms']:.2f} ms median / {ours['p99_ms']:.2f} ms p99"
    headline += (
        f" vs LiteLLM {theirs['median_ms']:.2f} / {theirs['p99_ms']:.2f} ms"
        if theirs is not None
        else " (LiteLLM unavailable)"
    )
    return {
        "recipe": "B1",
        "cores": "router or LiteLLM pinned to core 0; sim, NATS, Valkey, client on core 1",
        "method": f"{warmup} warm-up, {rounds} rounds x {per_round} sequential non-streaming "
        "chat requests per target, interleaved; median of round medians, p99 of all",
        "governance": "rpm+rpd+tpm+tpd and a quota (prompt, total) on the grant",
        "latency_ms": {k: {m: round(v, 3) for m, v in s.items()} for k, s in summary.items()},
        "added_ms": added,
        "router_cpu_ms_per_request": round(router_cpu_ms, 3),
        "usage_events_published": published,
        "targets": {"median_added_ms": 2.0, "p99_added_ms": 5.0, "beat": "LiteLLM"},
        "headline": headline,
        "verdict": "PASS" if ok else "MISS",
    }
