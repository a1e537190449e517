"""The latency and KV-cache model, asserted as relations (more load -> longer waits, a
cached prefix -> less prefill) and exact accounting, never as wall-clock numbers."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import openai


@dataclass
class Observed:
    ttft: float
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    text: str


async def stream_completion(
    client: openai.AsyncOpenAI, model: str, prompt: str, max_tokens: int, **extra: Any
) -> Observed:
    """One streamed completion, TTFT measured at the first chunk received."""
    started = time.monotonic()
    stream = await client.completions.create(
        model=model,
        prompt=prompt,
        max_tokens=max_tokens,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True, **extra},
    )
    ttft = 0.0
    pieces: list[str] = []
    usage = None
    async for chunk in stream:
        if not ttft:
            ttft = time.monotonic() - started
        pieces.extend(choice.text for choice in chunk.choices)
        usage = chunk.usage or usage
    assert usage is not None
    details = usage.prompt_tokens_details
    cached = details.cached_tokens if details and details.cached_tokens else 0
    return Observed(ttft, usage.prompt_tokens, usage.completion_tokens, cached, "".join(pieces))


@dataclass
class GaugeWatch:
    """Samples (running, waiting, kv usage) from /metrics while a workload runs."""

    samples: list[tuple[float, float, float]] = field(default_factory=list)

    async def during(self, sim: Any, work: Awaitable[Any]) -> Any:
        done = asyncio.Event()

        async def watch() -> None:
            while not done.is_set():
                m = await sim.metrics()
                self.samples.append(
                    (
                        m.value("vllm:num_requests_running"),
                        m.value("vllm:num_requests_waiting"),
                        m.value("vllm:kv_cache_usage_perc"),
                    )
                )
                await asyncio.sleep(0.002)

        async with asyncio.TaskGroup() as tasks:
            watcher = tasks.create_task(watch())
            try:
                return await work
            finally:
                done.set()
                await watcher

    @property
    def max_running(self) -> float:
        return max(s[0] for s in self.samples)

    @property
    def max_waiting(self) -> float:
        return max(s[1] for s in self.samples)


def prompt_of(tokens: int, tag: str) -> str:
    """A prompt of exactly `tokens` approximate tokens (4 bytes each), unique by `tag`."""
    text = (tag + "|" + "abcd" * tokens)[: tokens * 4]
    assert len(text) == tokens * 4
    return text


async def test_more_load_means_a_queue_and_longer_ttft(start_sim):
    async with start_sim(max_num_seqs=4, time_scale=2) as sim, sim.openai() as client:
        lone = [
            (await stream_completion(client, sim.model, prompt_of(40, f"lone{i}"), 16)).ttft
            for i in range(3)
        ]
        before = await sim.metrics()
        watch = GaugeWatch()
        loaded = await watch.during(
            sim,
            asyncio.gather(
                *(
                    stream_completion(client, sim.model, prompt_of(40, f"l{i}"), 16)
                    for i in range(24)
                )
            ),
        )
        after = await sim.metrics()
    assert watch.max_running <= 4  # max_num_seqs holds
    assert watch.max_waiting >= 8  # the rest queue
    assert statistics.mean(o.ttft for o in loaded) > 3 * statistics.median(lone)
    queue_before = before.value("vllm:request_queue_time_seconds_sum")
    queue_after = after.value("vllm:request_queue_time_seconds_sum")
    lone_queue = queue_before / 3
    assert (queue_after - queue_before) / 24 > 3 * lone_queue


async def test_decode_step_time_grows_with_batch_size(start_sim):
    async with (
        start_sim(time_scale=5, decode_ms_per_seq=1.0, max_num_seqs=64) as sim,
        sim.openai() as client,
    ):

        async def mean_itl(concurrency: int) -> float:
            before = await sim.metrics()
            await asyncio.gather(
                *(
                    stream_completion(client, sim.model, prompt_of(8, f"{concurrency}-{i}"), 24)
                    for i in range(concurrency)
                )
            )
            after = await sim.metrics()
            total = after.value("vllm:inter_token_latency_seconds_sum") - before.value(
                "vllm:inter_token_latency_seconds_sum"
            )
            count = after.value("vllm:inter_token_latency_seconds_count") - before.value(
                "vllm:inter_token_latency_seconds_count"
            )
            assert count == concurrency * 23
            return total / count

        alone = await mean_itl(1)
        batched = await mean_itl(32)
    # model: (8 + 1 x 1) ms vs (8 + 1 x 32) ms per step
    assert batched > 2 * alone


async def test_repeated_prefix_skips_prefill(start_sim):
    async with (
        start_sim(time_scale=2, prefill_ms_per_token=0.2) as sim,
        sim.openai() as client,
    ):
        shared = prompt_of(1000, "shared")

        async def run(prompt: str) -> tuple[Observed, float]:
            before = await sim.metrics()
            observed = await stream_completion(client, sim.model, prompt, 4)
            after = await sim.metrics()
            scheduled = after.value("vllm:iteration_tokens_total_sum") - before.value(
                "vllm:iteration_tokens_total_sum"
            )
            return observed, scheduled

        first, first_scheduled = await run(shared)
        second, second_scheduled = await run(shared)
        half = shared[:2000] + prompt_of(500, "other")
        third, _ = await run(half)
        metrics = await sim.metrics()

    assert first.cached_tokens == 0
    # Every full block but the one holding the last token comes from the cache.
    assert second.cached_tokens == (1000 - 1) // 16 * 16
    assert second.prompt_tokens == first.prompt_tokens == 1000
    # Exactly the cached tokens were not prefilled again (3 decode steps in each).
    assert first_scheduled == 1000 + 3
    assert second_scheduled == first_scheduled - second.cached_tokens
    assert second.ttft < first.ttft / 2
    assert second.text != ""
    # A prompt sharing its first half reuses that half's blocks only.
    assert third.cached_tokens == 500 // 16 * 16
    assert metrics.value("vllm:prefix_cache_hits_total") == second.cached_tokens + (
        third.cached_tokens
    )
    assert metrics.value("vllm:prefix_cache_queries_total") == 1000 + 1000 + 1000


async def test_prefix_caching_can_be_disabled(start_sim):
    async with start_sim(enable_prefix_caching=False) as sim, sim.openai() as client:
        prompt = prompt_of(200, "same")
        first = await stream_completion(client, sim.model, prompt, 2)
        second = await stream_completion(client, sim.model, prompt, 2)
        metrics = await sim.metrics()
    assert first.cached_tokens == second.cached_tokens == 0
    assert metrics.value("vllm:prefix_cache_hits_total") == 0


async def test_full_kv_cache_stops_admission(start_sim):
    # 40 blocks x 16 tokens; each request needs 13 blocks for its prompt and 15 by its end.
    settings = {
        "num_gpu_blocks_override": 40,
        "block_size": 16,
        "max_model_len": 640,
        "max_num_seqs": 32,
        "time_scale": 2,
    }
    async with start_sim(**settings) as sim, sim.openai() as client:
        watch = GaugeWatch()
        results = await watch.during(
            sim,
            asyncio.gather(
                *(
                    stream_completion(client, sim.model, prompt_of(200, f"{i}"), 40)
                    for i in range(8)
                )
            ),
        )
        idle = await sim.metrics()
    assert [r.completion_tokens for r in results] == [40] * 8
    # The KV cache, not max_num_seqs (32), bounds the batch: at most 3 prompts fit.
    assert watch.max_running <= 3
    # Requests wait while the running ones hold most of the cache (2 prompts = 65%).
    assert any(waiting >= 4 and usage >= 0.6 for _, waiting, usage in watch.samples)
    assert max(usage for _, _, usage in watch.samples) >= 0.9
    assert idle.value("vllm:num_requests_running") == 0
    assert idle.value("vllm:kv_cache_usage_perc") == 0.0  # cached blocks count as free


async def test_preemption_recomputes_and_still_answers_correctly(start_sim):
    # Prompts fit (3 blocks each, 4 requests = 12 of 24 blocks), their answers do not:
    # decoding must preempt and recompute, and the output must not change because of it.
    settings = {
        "num_gpu_blocks_override": 24,
        "block_size": 16,
        "max_model_len": 384,
        "time_scale": 5,
    }
    async with start_sim(**settings) as sim, sim.openai() as client:
        prompts = [prompt_of(40, f"p{i}") for i in range(4)]
        streamed = await asyncio.gather(
            *(stream_completion(client, sim.model, p, 100, seed=i) for i, p in enumerate(prompts))
        )
        metrics = await sim.metrics()
        alone = [
            await stream_completion(client, sim.model, p, 100, seed=i)
            for i, p in enumerate(prompts)
        ]
    assert metrics.value("vllm:num_preemptions_total") > 0
    assert [s.completion_tokens for s in streamed] == [100] * 4
    assert [s.text for s in streamed] == [a.text for a in alone]


async def test_metrics_agree_with_what_clients_saw(start_sim):
    async with start_sim(time_scale=10) as sim, sim.openai() as client:
        before = await sim.metrics()
        streams = [
            stream_completion(client, sim.model, prompt_of(30 + i, f"s{i}"), 5 + i)
            for i in range(6)
        ]

        async def unary(i: int) -> Any:
            return await client.chat.completions.create(
                model=sim.model,
                messages=[{"role": "user", "content": f"question {i} " * (i + 1)}],
                max_tokens=3 + i,
            )

        results = await asyncio.gather(*streams, *(unary(i) for i in range(6)))
        embedded = await client.embeddings.create(model=sim.model, input=["one", "two words"])
        after = await sim.metrics()

    observed: list[Observed] = list(results[:6])
    answers = results[6:]
    prompt_total = sum(o.prompt_tokens for o in observed) + sum(
        a.usage.prompt_tokens for a in answers
    )
    completion_total = sum(o.completion_tokens for o in observed) + sum(
        a.usage.completion_tokens for a in answers
    )

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("vllm:prompt_tokens_total") == prompt_total + embedded.usage.prompt_tokens
    assert delta("vllm:generation_tokens_total") == completion_total
    assert delta("vllm:request_success_total") == 12 + 2  # two embedding inputs
    assert delta("vllm:request_success_total", finished_reason="abort") == 0
    assert delta("vllm:time_to_first_token_seconds_count") == 12
    assert delta("vllm:e2e_request_latency_seconds_count") == 12
    assert delta("vllm:request_generation_tokens_sum") == completion_total
    assert delta("vllm:inter_token_latency_seconds_count") == completion_total - 12
    assert delta("vllm:time_to_first_token_seconds_sum") > 0
    assert after.value("vllm:num_requests_running") == 0
    assert after.value("vllm:num_requests_waiting") == 0


async def test_server_ttft_never_exceeds_client_ttft(start_sim):
    # The server's TTFT interval (handler start -> first chunk written) lies inside the
    # client's (request sent -> first chunk read), request by request.
    async with start_sim(time_scale=4) as sim, sim.openai() as client:
        before = await sim.metrics()
        observed = await asyncio.gather(
            *(stream_completion(client, sim.model, prompt_of(300, f"t{i}"), 4) for i in range(16))
        )
        after = await sim.metrics()
    server = after.value("vllm:time_to_first_token_seconds_sum") - before.value(
        "vllm:time_to_first_token_seconds_sum"
    )
    client_total = sum(o.ttft for o in observed)
    assert 0 < server <= client_total


async def test_client_disconnect_aborts_and_frees_the_slot(start_sim):
    async with start_sim(time_scale=2) as sim, sim.http() as http:
        body = {"prompt": prompt_of(64, "gone"), "max_tokens": 500, "stream": True}
        async with http.stream("POST", "/v1/completions", json=body) as response:
            lines = response.aiter_lines()
            seen = 0
            async for line in lines:
                seen += line.startswith("data: ")
                if seen == 2:
                    break
            busy = await sim.metrics()
        for _ in range(200):
            idle = await sim.metrics()
            if idle.value("vllm:num_requests_running") == 0:
                break
            await asyncio.sleep(0.01)
    assert busy.value("vllm:num_requests_running") == 1
    assert busy.value("vllm:kv_cache_usage_perc") > 0
    assert idle.value("vllm:num_requests_running") == 0
    assert idle.value("vllm:request_success_total", finished_reason="abort") == 1
    assert idle.value("vllm:kv_cache_usage_perc") == 0


async def test_time_scale_and_tensor_parallelism_speed_up(start_sim):
    async def latency(**settings: Any) -> float:
        async with start_sim(**settings) as sim, sim.openai() as client:
            started = time.monotonic()
            await stream_completion(client, sim.model, prompt_of(400, "x"), 24)
            return time.monotonic() - started

    slow = await latency(time_scale=2)
    fast = await latency(time_scale=20)
    parallel = await latency(time_scale=2, tensor_parallel_size=4)
    assert fast < slow / 2
    assert parallel < slow


async def test_sglang_and_both_metric_styles(start_sim):
    async def names_after_one_request(style: str) -> tuple[set[str], Any]:
        async with start_sim(metrics_style=style) as sim, sim.openai() as client:
            observed = await stream_completion(client, sim.model, prompt_of(20, style), 6)
            metrics = await sim.metrics()
            return metrics.names(), (metrics, observed)

    sglang_names, (sglang, observed) = await names_after_one_request("sglang")
    assert {
        "sglang:num_running_reqs",
        "sglang:num_queue_reqs",
        "sglang:token_usage",
        "sglang:cache_hit_rate",
        "sglang:time_to_first_token_seconds_count",
        "sglang:e2e_request_latency_seconds_count",
        "sglang:generation_tokens_total",
    } <= sglang_names
    assert not any(name.startswith("vllm:") for name in sglang_names)
    assert sglang.value("sglang:generation_tokens_total") == observed.completion_tokens
    assert sglang.value("sglang:prompt_tokens_total") == observed.prompt_tokens
    assert sglang.value("sglang:num_requests_total") == 1
    both_names, _ = await names_after_one_request("both")
    assert "vllm:num_requests_running" in both_names
    assert "sglang:num_running_reqs" in both_names
    vllm_names, (vllm, _) = await names_after_one_request("vllm")
    assert not any(name.startswith("sglang:") for name in vllm_names)
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
        "vllm:time_per_output_token_seconds_count",
        "vllm:request_success_total",
    ):
        assert name in vllm_names
    assert all(
        labels.get("model_name") == "sim-model" and labels.get("engine") == "0"
        for name, labels, _ in vllm.samples
        if name.startswith("vllm:") and name != "vllm:cache_config_info"
    )
