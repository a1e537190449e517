"""Reading engine load from Prometheus text: vLLM's and SGLang's metric names.

Only the few series routing needs are read, with a line scanner rather than a full
exposition parser (a scrape of a vLLM engine is hundreds of histogram lines; we want four
gauges and two counters). Series of several engines in one process (vLLM's `engine`
label) are summed (counts) or averaged (cache usage).

- running: `vllm:num_requests_running` / `sglang:num_running_reqs`
- waiting: `vllm:num_requests_waiting` / `sglang:num_queue_reqs`
- KV-cache usage: `vllm:kv_cache_usage_perc`, else `vllm:gpu_cache_usage_perc` /
  `sglang:token_usage`
- prefix-cache hit rate: Δ`vllm:prefix_cache_hits_total` / Δ`vllm:prefix_cache_queries_total`
  since the previous scrape (older vLLM: `vllm:gpu_prefix_cache_{hits,queries}_total`) /
  `sglang:cache_hit_rate`

Malformed lines are skipped; a page with none of these series gives zeros (an engine
that exposes nothing is idle as far as we can tell).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass

from arks_common import events

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^\n]*\})?\s+(\S+)")

RUNNING = ("vllm:num_requests_running", "sglang:num_running_reqs")
WAITING = ("vllm:num_requests_waiting", "sglang:num_queue_reqs")
KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage")
PREFIX_HITS = ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total")
PREFIX_QUERIES = ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total")
SGLANG_HIT_RATE = "sglang:cache_hit_rate"

_WANTED = frozenset((*RUNNING, *WAITING, *KV_USAGE, *PREFIX_HITS, *PREFIX_QUERIES, SGLANG_HIT_RATE))


@dataclass(frozen=True)
class EngineMetrics:
    running: int = 0
    waiting: int = 0
    kv_cache_usage: float = 0.0
    prefix_hits: float | None = None
    prefix_queries: float | None = None
    hit_rate_gauge: float | None = None


def _samples(text: str) -> dict[str, list[float]]:
    found: dict[str, list[float]] = defaultdict(list)
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        match = _LINE.match(line)
        if match is None or match.group(1) not in _WANTED:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        if math.isfinite(value):
            found[match.group(1)].append(value)
    return found


def _first(found: dict[str, list[float]], names: tuple[str, ...]) -> list[float] | None:
    for name in names:
        if name in found:
            return found[name]
    return None


def parse_engine_metrics(text: str) -> EngineMetrics:
    found = _samples(text)
    running = _first(found, RUNNING) or []
    waiting = _first(found, WAITING) or []
    usage = _first(found, KV_USAGE) or []
    hits = _first(found, PREFIX_HITS)
    queries = _first(found, PREFIX_QUERIES)
    gauge = found.get(SGLANG_HIT_RATE)
    return EngineMetrics(
        running=int(sum(running)),
        waiting=int(sum(waiting)),
        kv_cache_usage=min(max(sum(usage) / len(usage), 0.0), 1.0) if usage else 0.0,
        prefix_hits=sum(hits) if hits is not None else None,
        prefix_queries=sum(queries) if queries is not None else None,
        hit_rate_gauge=sum(gauge) / len(gauge) if gauge else None,
    )


def prefix_hit_rate(current: EngineMetrics, previous: EngineMetrics | None) -> float | None:
    """Hit rate since the previous scrape (cumulative on the first, or after a restart)."""
    if current.hit_rate_gauge is not None:
        return min(max(current.hit_rate_gauge, 0.0), 1.0)
    if current.prefix_hits is None or current.prefix_queries is None:
        return None
    hits, queries = current.prefix_hits, current.prefix_queries
    if (
        previous is not None
        and previous.prefix_hits is not None
        and previous.prefix_queries is not None
        and queries >= previous.prefix_queries
        and hits >= previous.prefix_hits
    ):
        if queries == previous.prefix_queries:
            return None
        hits -= previous.prefix_hits
        queries -= previous.prefix_queries
    if queries <= 0:
        return None
    return min(max(hits / queries, 0.0), 1.0)


def replica_load(
    replica: str, url: str, current: EngineMetrics, previous: EngineMetrics | None
) -> events.ReplicaLoad:
    return events.ReplicaLoad(
        replica=replica,
        url=url,
        ready=True,
        running=current.running,
        waiting=current.waiting,
        kv_cache_usage=current.kv_cache_usage,
        prefix_cache_hit_rate=prefix_hit_rate(current, previous),
    )
