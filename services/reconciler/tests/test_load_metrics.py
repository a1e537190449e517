"""Engine load from vLLM and SGLang metric pages."""

from __future__ import annotations

import pytest

from arks_reconciler import load_metrics

VLLM = """\
# HELP vllm:num_requests_running Requests in the model batch.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="qwen"} 3.0
vllm:num_requests_running{engine="1",model_name="qwen"} 2.0
vllm:num_requests_waiting{engine="0",model_name="qwen"} 4.0
vllm:kv_cache_usage_perc{engine="0",model_name="qwen"} 0.5
vllm:kv_cache_usage_perc{engine="1",model_name="qwen"} 0.25
vllm:gpu_cache_usage_perc{engine="0",model_name="qwen"} 0.99
vllm:prefix_cache_queries_total{engine="0",model_name="qwen"} 1000.0
vllm:prefix_cache_hits_total{engine="0",model_name="qwen"} 250.0
vllm:e2e_request_latency_seconds_bucket{le="0.3",model_name="qwen"} 5.0
"""

SGLANG = """\
sglang:num_running_reqs{model_name="qwen"} 7.0
sglang:num_queue_reqs{model_name="qwen"} 1.0
sglang:token_usage{model_name="qwen"} 0.75
sglang:cache_hit_rate{model_name="qwen"} 0.4
"""

OLD_VLLM = """\
vllm:num_requests_running{model_name="m"} 1.0
vllm:gpu_cache_usage_perc{model_name="m"} 0.3
vllm:gpu_prefix_cache_queries_total{model_name="m"} 10
vllm:gpu_prefix_cache_hits_total{model_name="m"} 5
"""


def test_vllm_page_sums_engines_and_prefers_the_new_cache_gauge() -> None:
    metrics = load_metrics.parse_engine_metrics(VLLM)
    assert metrics.running == 5
    assert metrics.waiting == 4
    assert metrics.kv_cache_usage == pytest.approx(0.375)
    assert load_metrics.prefix_hit_rate(metrics, None) == pytest.approx(0.25)


def test_sglang_page() -> None:
    metrics = load_metrics.parse_engine_metrics(SGLANG)
    load = load_metrics.replica_load("r", "http://127.0.0.1:1", metrics, None)
    assert (load.running, load.waiting) == (7, 1)
    assert load.kv_cache_usage == pytest.approx(0.75)
    assert load.prefix_cache_hit_rate == pytest.approx(0.4)


def test_older_vllm_names() -> None:
    metrics = load_metrics.parse_engine_metrics(OLD_VLLM)
    assert metrics.kv_cache_usage == pytest.approx(0.3)
    assert load_metrics.prefix_hit_rate(metrics, None) == pytest.approx(0.5)


def test_hit_rate_is_computed_since_the_previous_scrape() -> None:
    before = load_metrics.parse_engine_metrics(VLLM)
    after = load_metrics.parse_engine_metrics(
        VLLM.replace("} 1000.0", "} 1100.0").replace("} 250.0", "} 340.0")
    )
    assert load_metrics.prefix_hit_rate(after, before) == pytest.approx(0.9)
    # No new queries: no fresh figure. A restarted engine (counters went down): cumulative.
    assert load_metrics.prefix_hit_rate(before, before) is None
    assert load_metrics.prefix_hit_rate(before, after) == pytest.approx(0.25)


def test_garbage_and_empty_pages_give_zeros() -> None:
    metrics = load_metrics.parse_engine_metrics("not a metric line\nvllm:num_requests_running x\n")
    assert (metrics.running, metrics.waiting, metrics.kv_cache_usage) == (0, 0, 0.0)
    assert load_metrics.prefix_hit_rate(metrics, None) is None
