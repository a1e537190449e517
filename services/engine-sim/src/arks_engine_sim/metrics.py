"""What the simulator counts and how `/metrics` shows it, with vLLM's or SGLang's names.

The hot path (one observation per generated token) updates plain integers and a
bisect-based histogram; prometheus_client is only used to format families at scrape
time, so a scrape costs O(metrics) and never locks the scheduler. Gauges (running,
waiting, KV usage) are read from the engine when scraped.

Names and label sets follow vLLM V1 (`model_name`, `engine`) and SGLang (`model_name`);
docs/engine-sim.md lists them. Histograms share one set of buckets (vLLM's) in both
styles. Times are wall-clock seconds as clients observe them, whatever the time scale.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from arks_engine_sim.settings import MetricsStyle

CONTENT_TYPE = CONTENT_TYPE_LATEST

TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
    10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
)  # fmt: skip
REQUEST_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
FINISH_REASONS = ("stop", "length", "abort")


def one_two_five_buckets(limit: int) -> tuple[float, ...]:
    """1, 2, 5, 10, 20, 50, ... up to `limit` (vLLM's token-count buckets)."""
    out: list[float] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > limit:
                return tuple(out)
            out.append(float(value))
        exponent += 1


class Histogram:
    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le semantics).
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            out.append((repr(float(bound)), float(running)))
        out.append(("+Inf", float(self.count)))
        return out


@dataclass
class EngineStats:
    """Counters and histograms, written by the scheduler and the HTTP layer."""

    max_model_len: int
    prompt_tokens: int = 0
    generation_tokens: int = 0
    prefix_queries: int = 0
    prefix_hits: int = 0
    preemptions: int = 0
    finished: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FINISH_REASONS, 0))
    faults: dict[str, int] = field(default_factory=dict)
    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS))
    itl: Histogram = field(default_factory=lambda: Histogram(ITL_BUCKETS))
    tpot_request: Histogram = field(default_factory=lambda: Histogram(ITL_BUCKETS))
    e2e: Histogram = field(default_factory=lambda: Histogram(REQUEST_BUCKETS))
    queue_time: Histogram = field(default_factory=lambda: Histogram(REQUEST_BUCKETS))
    prefill_time: Histogram = field(default_factory=lambda: Histogram(REQUEST_BUCKETS))
    decode_time: Histogram = field(default_factory=lambda: Histogram(REQUEST_BUCKETS))
    inference_time: Histogram = field(default_factory=lambda: Histogram(REQUEST_BUCKETS))
    prompt_len: Histogram = field(init=False)
    generation_len: Histogram = field(init=False)
    iteration_tokens: Histogram = field(init=False)

    def __post_init__(self) -> None:
        token_buckets = one_two_five_buckets(self.max_model_len)
        self.prompt_len = Histogram(token_buckets)
        self.generation_len = Histogram(token_buckets)
        self.iteration_tokens = Histogram(one_two_five_buckets(max(self.max_model_len, 16384)))

    def fault(self, kind: str) -> None:
        self.faults[kind] = self.faults.get(kind, 0) + 1


class EngineGauges(Protocol):
    @property
    def num_running(self) -> int: ...
    @property
    def num_waiting(self) -> int: ...
    @property
    def kv_usage(self) -> float: ...
    @property
    def kv_used_tokens(self) -> int: ...


@dataclass(frozen=True)
class CacheInfo:
    block_size: int
    num_gpu_blocks: int
    enable_prefix_caching: bool


def _histogram(name: str, doc: str, labels: list[str], values: list[str], h: Histogram) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=labels)
    family.add_metric(values, buckets=h.cumulative(), sum_value=h.total)
    return family


def _gauge(name: str, doc: str, labels: list[str], values: list[str], value: float) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=labels)
    family.add_metric(values, value)
    return family


def _counter(name: str, doc: str, labels: list[str], values: list[str], value: float) -> Metric:
    family = CounterMetricFamily(name, doc, labels=labels)
    family.add_metric(values, value)
    return family


class SimCollector:
    def __init__(
        self,
        stats: EngineStats,
        gauges: EngineGauges,
        *,
        model_name: str,
        style: MetricsStyle,
        cache: CacheInfo,
    ) -> None:
        self.stats = stats
        self.gauges = gauges
        self.model_name = model_name
        self.style = style
        self.cache = cache
        self._last_rate_sample = (time.monotonic(), 0)

    def collect(self) -> Iterator[Metric]:
        if self.style in ("vllm", "both"):
            yield from self._vllm()
        if self.style in ("sglang", "both"):
            yield from self._sglang()
        faults = CounterMetricFamily(
            "arks_sim:faults_injected", "Faults injected by the simulator.", labels=["kind"]
        )
        for kind, count in sorted(self.stats.faults.items()):
            faults.add_metric([kind], count)
        yield faults

    def _vllm(self) -> Iterator[Metric]:
        s, g = self.stats, self.gauges
        labels = ["model_name", "engine"]
        values = [self.model_name, "0"]
        yield _gauge(
            "vllm:num_requests_running", "Requests in the model batch.", labels, values,
            g.num_running,
        )  # fmt: skip
        yield _gauge(
            "vllm:num_requests_waiting", "Requests waiting to be scheduled.", labels, values,
            g.num_waiting,
        )  # fmt: skip
        yield _gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage, 1 means 100 percent.", labels, values,
            g.kv_usage,
        )  # fmt: skip
        yield _gauge(
            "vllm:gpu_cache_usage_perc",
            "KV-cache usage, 1 means 100 percent (deprecated name).",
            labels, values, g.kv_usage,
        )  # fmt: skip
        info = GaugeMetricFamily(
            "vllm:cache_config_info",
            "Information of the KV-cache configuration.",
            labels=["block_size", "num_gpu_blocks", "enable_prefix_caching", "engine"],
        )
        info.add_metric(
            [
                str(self.cache.block_size),
                str(self.cache.num_gpu_blocks),
                str(self.cache.enable_prefix_caching),
                "0",
            ],
            1.0,
        )
        yield info
        yield _counter(
            "vllm:num_preemptions", "Cumulative preemptions.", labels, values, s.preemptions
        )
        yield _counter(
            "vllm:prefix_cache_queries", "Prompt tokens queried in the prefix cache.",
            labels, values, s.prefix_queries,
        )  # fmt: skip
        yield _counter(
            "vllm:prefix_cache_hits", "Prompt tokens found in the prefix cache.",
            labels, values, s.prefix_hits,
        )  # fmt: skip
        yield _counter(
            "vllm:prompt_tokens", "Prefill tokens processed.", labels, values, s.prompt_tokens
        )
        yield _counter(
            "vllm:generation_tokens", "Generation tokens processed.", labels, values,
            s.generation_tokens,
        )  # fmt: skip
        success = CounterMetricFamily(
            "vllm:request_success",
            "Finished requests by finish reason.",
            labels=[*labels, "finished_reason"],
        )
        for reason, count in s.finished.items():
            success.add_metric([*values, reason], count)
        yield success
        hists = (
            ("vllm:time_to_first_token_seconds", "Time to first token.", s.ttft),
            ("vllm:time_per_output_token_seconds", "Time between output tokens.", s.itl),
            ("vllm:inter_token_latency_seconds", "Time between output tokens.", s.itl),
            (
                "vllm:request_time_per_output_token_seconds",
                "Per request mean time per output token.",
                s.tpot_request,
            ),
            ("vllm:e2e_request_latency_seconds", "End-to-end request latency.", s.e2e),
            ("vllm:request_queue_time_seconds", "Time spent waiting.", s.queue_time),
            ("vllm:request_prefill_time_seconds", "Time spent in prefill.", s.prefill_time),
            ("vllm:request_decode_time_seconds", "Time spent in decode.", s.decode_time),
            ("vllm:request_inference_time_seconds", "Time running.", s.inference_time),
            ("vllm:request_prompt_tokens", "Prompt tokens per request.", s.prompt_len),
            (
                "vllm:request_generation_tokens",
                "Generation tokens per request.",
                s.generation_len,
            ),
            ("vllm:iteration_tokens_total", "Tokens per engine step.", s.iteration_tokens),
        )
        for name, doc, hist in hists:
            yield _histogram(name, doc, labels, values, hist)

    def _sglang(self) -> Iterator[Metric]:
        s, g = self.stats, self.gauges
        labels = ["model_name"]
        values = [self.model_name]
        now = time.monotonic()
        then, tokens_then = self._last_rate_sample
        elapsed = now - then
        rate = (s.generation_tokens - tokens_then) / elapsed if elapsed > 0 else 0.0
        self._last_rate_sample = (now, s.generation_tokens)
        hit_rate = s.prefix_hits / s.prefix_queries if s.prefix_queries else 0.0
        yield _gauge("sglang:num_running_reqs", "Running requests.", labels, values, g.num_running)
        yield _gauge("sglang:num_queue_reqs", "Queued requests.", labels, values, g.num_waiting)
        yield _gauge(
            "sglang:num_used_tokens", "KV tokens in use.", labels, values, g.kv_used_tokens
        )
        yield _gauge("sglang:token_usage", "KV-cache usage fraction.", labels, values, g.kv_usage)
        yield _gauge(
            "sglang:cache_hit_rate", "Prefix-cache hit rate (tokens).", labels, values, hit_rate
        )
        yield _gauge(
            "sglang:gen_throughput", "Generation tokens/s since the last scrape.",
            labels, values, rate,
        )  # fmt: skip
        yield _counter(
            "sglang:prompt_tokens", "Prefill tokens processed.", labels, values, s.prompt_tokens
        )
        yield _counter(
            "sglang:generation_tokens", "Generation tokens processed.", labels, values,
            s.generation_tokens,
        )  # fmt: skip
        yield _counter(
            "sglang:cached_tokens", "Prompt tokens served from the prefix cache.",
            labels, values, s.prefix_hits,
        )  # fmt: skip
        yield _counter(
            "sglang:num_requests", "Finished requests.", labels, values, sum(s.finished.values())
        )
        hists = (
            ("sglang:time_to_first_token_seconds", "Time to first token.", s.ttft),
            ("sglang:inter_token_latency_seconds", "Time between output tokens.", s.itl),
            ("sglang:time_per_output_token_seconds", "Time between output tokens.", s.itl),
            ("sglang:e2e_request_latency_seconds", "End-to-end request latency.", s.e2e),
            ("sglang:queue_time_seconds", "Time spent waiting.", s.queue_time),
        )
        for name, doc, hist in hists:
            yield _histogram(name, doc, labels, values, hist)


class MetricsEndpoint:
    """A registry of its own per simulator, so several can live in one test process."""

    def __init__(self, collector: SimCollector) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)
