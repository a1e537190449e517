"""Engine simulator under load: one simulator process pinned to core 0 at time scale 1,
N concurrent streaming chat requests from this process pinned to core 1 (aiohttp).

Checks every stream (well-formed SSE, one content chunk per token, text identical to
the unary answer for the same prompt and seed, exact usage, finish_reason, [DONE]) and
compares the TTFT clients measured with the TTFT the simulator reports on /metrics
(histogram sum/count, and p50 interpolated in the buckets). Target (issue 3): 500
concurrent streams, all correct, mean TTFT within 10%. Baselines measured in the same
run: the idle TTFT of a lone request, and the latency model's prediction for it.

python -m bench engine_sim            # 500 concurrent streams x 2 rounds
python -m bench engine_sim --quick    # 100 concurrent streams x 1 round
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.common import BenchContext, free_port, percentile, process, venv_bin

MAX_NUM_SEQS = 512
# A shared system prompt (prefix-cache hits after the first request) and a question
# unique to every request (always prefilled): about 330 prompt tokens per request.
SYSTEM_PROMPT = (
    "You are a careful assistant for an operations team. Answer briefly, cite the runbook "
    "section you rely on, and never invent metrics. The cluster runs several model "
    "replicas behind a gateway; capacity questions need numbers, not adjectives. "
)


def _question(index: int) -> str:
    return (
        f"Ticket {index}: service {index % 97} saw its evening peak grow by {10 + index % 50} "
        f"percent over the last {index % 13 + 2} weeks. The p99 latency budget is "
        f"{200 + index % 300} ms and each replica sustains about {index % 40 + 20} requests "
        "per second before queueing starts. Our autoscaler reacts after a sustained step of "
        "one minute and new replicas need about ninety seconds to load weights. "
    ) * 3


@dataclass
class StreamResult:
    ok: bool
    ttft: float
    latency: float
    text: str
    prompt_tokens: int
    completion_tokens: int
    problem: str = ""


class Connection:
    """A minimal keep-alive HTTP/1.1 client: the load generator must cost far less than
    what it measures (aiohttp spends ~0.25 ms of client CPU per request, which at a
    500-request burst is itself tens of milliseconds of TTFT)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str):
        self.reader, self.writer, self.host = reader, writer, host.encode()

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        return cls(reader, writer, f"{host}:{port}")

    def close(self) -> None:
        self.writer.close()

    def send(self, method: bytes, path: bytes, body: bytes = b"") -> None:
        head = b"%s %s HTTP/1.1\r\nhost: %s\r\n" % (method, path, self.host)
        if body:
            head += b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body)
        self.writer.write(head + b"\r\n" + body)

    async def head(self) -> tuple[int, bytes]:
        status_line = await self.reader.readuntil(b"\r\n")
        headers = await self.reader.readuntil(b"\r\n\r\n")
        return int(status_line.split(b" ", 2)[1]), headers.lower()

    async def body(self, headers: bytes) -> bytes:
        if b"transfer-encoding: chunked" in headers:
            return b"".join([chunk async for chunk in self.chunks()])
        length = int(headers.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        return await self.reader.readexactly(length)

    async def chunks(self) -> Any:
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return
            data = await self.reader.readexactly(size + 2)
            yield data[:-2]

    async def request(self, method: bytes, path: bytes, body: bytes = b"") -> tuple[int, bytes]:
        self.send(method, path, body)
        status, headers = await self.head()
        return status, await self.body(headers)


@dataclass
class Scrape:
    samples: dict[str, float] = field(default_factory=dict)

    def get(self, name: str, **labels: str) -> float:
        key = name + "".join(f"|{k}={v}" for k, v in sorted(labels.items()))
        return self.samples.get(key, 0.0)


def _parse_metrics(text: str) -> Scrape:
    from prometheus_client.parser import text_string_to_metric_families

    scrape = Scrape()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k not in ("model_name", "engine")}
            key = sample.name + "".join(f"|{k}={v}" for k, v in sorted(labels.items()))
            scrape.samples[key] = sample.value
    return scrape


def _histogram_quantile(before: Scrape, after: Scrape, name: str, q: float) -> float:
    """Prometheus-style linear interpolation inside the bucket holding quantile q."""
    buckets: list[tuple[float, float]] = []
    for key, value in after.samples.items():
        if key.startswith(f"{name}_bucket|le="):
            bound = key.split("le=", 1)[1]
            upper = float("inf") if bound == "+Inf" else float(bound)
            buckets.append((upper, value - before.samples.get(key, 0.0)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return float("nan")
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower_bound
            width = count - lower_count
            return lower_bound + (upper - lower_bound) * ((rank - lower_count) / width)
        lower_bound, lower_count = upper, count
    return float("nan")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _body(index: int, max_tokens: int, *, stream: bool) -> bytes:
    body: dict[str, Any] = {
        "model": "bench-model",
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": _question(index)},
        ],
        "max_tokens": max_tokens,
        "seed": index,
        "ignore_eos": True,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


async def _stream_once(conn: Connection, index: int, max_tokens: int) -> StreamResult:
    body = _body(index, max_tokens, stream=True)
    ttft = 0.0
    pieces: list[str] = []
    ids: set[str] = set()
    finish: str | None = None
    usage: dict[str, Any] | None = None
    done = False
    started = time.perf_counter()
    conn.send(b"POST", b"/v1/chat/completions", body)
    try:
        status, headers = await conn.head()
        if status != 200:
            await conn.body(headers)
            return StreamResult(False, 0, 0, "", 0, 0, f"HTTP {status}")
        if b"text/event-stream" not in headers:
            return StreamResult(False, 0, 0, "", 0, 0, "not an event stream")
        pending = b""
        async for data in conn.chunks():
            pending += data
            *events, pending = pending.split(b"\n\n")
            for event in events:
                if not event.startswith(b"data: "):
                    return StreamResult(False, 0, 0, "", 0, 0, f"bad event {event[:40]!r}")
                payload = event[6:]
                if payload == b"[DONE]":
                    done = True
                    continue
                chunk = orjson.loads(payload)
                ids.add(chunk["id"])
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk["choices"]:
                    delta = choice["delta"]
                    if "role" in delta:
                        continue
                    if not ttft:
                        ttft = time.perf_counter() - started
                    pieces.append(delta["content"])
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        return StreamResult(False, 0, 0, "", 0, 0, f"{type(exc).__name__}: {exc}")
    latency = time.perf_counter() - started
    problem = ""
    if pending.strip():
        problem = "trailing bytes after the last event"
    elif not done:
        problem = "no [DONE]"
    elif len(ids) != 1:
        problem = f"{len(ids)} ids in one stream"
    elif usage is None:
        problem = "no usage chunk"
    elif finish != "length":
        problem = f"finish_reason {finish}"
    elif len(pieces) != max_tokens or usage["completion_tokens"] != max_tokens:
        problem = f"{len(pieces)} chunks, usage {usage['completion_tokens']}, want {max_tokens}"
    elif usage["total_tokens"] != usage["prompt_tokens"] + usage["completion_tokens"]:
        problem = "usage does not add up"
    prompt_tokens = usage["prompt_tokens"] if usage else 0
    text = "".join(pieces)
    return StreamResult(not problem, ttft, latency, text, prompt_tokens, max_tokens, problem)


async def _unary(conn: Connection, index: int, max_tokens: int) -> dict[str, Any]:
    status, body = await conn.request(
        b"POST", b"/v1/chat/completions", _body(index, max_tokens, stream=False)
    )
    if status != 200:
        raise RuntimeError(f"unary reference {index}: HTTP {status} {body[:200]!r}")
    answer: dict[str, Any] = orjson.loads(body)
    return answer


async def _wait_healthy(port: int, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            conn = await Connection.open("127.0.0.1", port)
            try:
                status, _ = await conn.request(b"GET", b"/health")
            finally:
                conn.close()
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("simulator did not become healthy")


async def _scrape(port: int) -> Scrape:
    # A fresh connection each time: uvicorn closes idle keep-alive connections after 5 s.
    conn = await Connection.open("127.0.0.1", port)
    try:
        status, body = await conn.request(b"GET", b"/metrics")
    finally:
        conn.close()
    if status != 200:
        raise RuntimeError(f"/metrics: HTTP {status}")
    return _parse_metrics(body.decode())


async def _watch_gauges(port: int, peaks: dict[str, float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        scrape = await _scrape(port)
        running = scrape.get("vllm:num_requests_running")
        waiting = scrape.get("vllm:num_requests_waiting")
        peaks["running"] = max(peaks.get("running", 0.0), running)
        peaks["waiting"] = max(peaks.get("waiting", 0.0), waiting)
        peaks["in_system"] = max(peaks.get("in_system", 0.0), running + waiting)
        peaks["kv_usage"] = max(peaks.get("kv_usage", 0.0), scrape.get("vllm:kv_cache_usage_perc"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


def _delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.get(name, **labels) - before.get(name, **labels)


async def _pool(port: int, size: int) -> list[Connection]:
    conns: list[Connection] = []
    for start in range(0, size, 100):
        batch = min(100, size - start)
        conns.extend(
            await asyncio.gather(*(Connection.open("127.0.0.1", port) for _ in range(batch)))
        )
    return conns


async def run(ctx: BenchContext) -> dict[str, object]:
    concurrency = 100 if ctx.quick else 500
    rounds = 1 if ctx.quick else 2
    max_tokens = 32 if ctx.quick else 64
    port = free_port()
    argv = [
        venv_bin("arks-engine-sim"),
        "--model", "bench-model",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--max-num-seqs", str(MAX_NUM_SEQS),
        "--uvicorn-log-level", "warning",
        "--time-scale", "1",
    ]  # fmt: skip
    previous_affinity = os.sched_getaffinity(0)
    pinned = (os.cpu_count() or 1) >= 2
    async with process(argv, log=ctx.workdir / "sim.log", cpu=0 if pinned else None) as sim:
        if pinned:
            os.sched_setaffinity(0, {1})
        try:
            await _wait_healthy(port, 30)
            control = await Connection.open("127.0.0.1", port)
            # Idle baseline: lone streams with prompts the load does not use.
            idle = [await _stream_once(control, -1 - i, max_tokens) for i in range(5)]
            idle_ttft = statistics.median(r.ttft for r in idle)
            idle_prompt = idle[0].prompt_tokens
            control.close()
            conns = await _pool(port, concurrency)
            before = await _scrape(port)
            cpu_before = _cpu_seconds(sim.pid)
            client_before = os.times()
            peaks: dict[str, float] = {}
            stop = asyncio.Event()

            async def worker(slot: int) -> list[tuple[int, StreamResult]]:
                out = []
                for round_ in range(rounds):
                    index = slot + round_ * concurrency
                    out.append((index, await _stream_once(conns[slot], index, max_tokens)))
                return out

            started = time.perf_counter()
            async with asyncio.TaskGroup() as tasks:
                watcher = tasks.create_task(_watch_gauges(port, peaks, stop))
                workers = [tasks.create_task(worker(s)) for s in range(concurrency)]
                await asyncio.gather(*workers)
                stop.set()
                await watcher
            wall = time.perf_counter() - started
            cpu_sim = _cpu_seconds(sim.pid) - cpu_before
            client_after = os.times()
            after = await _scrape(port)
            for conn in conns:
                conn.close()
            # References: the unary answer to every request's body (same prompt and seed),
            # on fresh connections.
            results = [item for w in workers for item in w.result()]
            conns = await _pool(port, concurrency)
            references: dict[int, dict[str, Any]] = {}

            async def reference(slot: int) -> None:
                for index, _ in results[slot::concurrency]:
                    references[index] = await _unary(conns[slot], index, max_tokens)

            async with asyncio.TaskGroup() as tasks:
                for slot in range(concurrency):
                    tasks.create_task(reference(slot))
            for conn in conns:
                conn.close()
        finally:
            os.sched_setaffinity(0, previous_affinity)

    problems: list[str] = []
    for index, result in results:
        reference = references[index]
        if result.ok and result.text != reference["choices"][0]["message"]["content"]:
            result.ok, result.problem = False, "text differs from the unary answer"
        if result.ok and result.prompt_tokens != reference["usage"]["prompt_tokens"]:
            result.ok, result.problem = False, "prompt_tokens differ from the unary answer"
        if not result.ok:
            problems.append(result.problem)
    good = [r for _, r in results if r.ok]
    total = len(results)
    client_ttfts = [r.ttft for r in good]
    client_mean = statistics.fmean(client_ttfts) if client_ttfts else float("nan")
    client_p50 = percentile(client_ttfts, 50)
    ttft_count = _delta(before, after, "vllm:time_to_first_token_seconds_count")
    ttft_sum = _delta(before, after, "vllm:time_to_first_token_seconds_sum")
    server_mean = ttft_sum / ttft_count if ttft_count else float("nan")
    server_p50 = _histogram_quantile(before, after, "vllm:time_to_first_token_seconds", 0.5)
    ratio = server_mean / client_mean if client_mean else float("nan")
    counters_agree = (
        int(_delta(before, after, "vllm:generation_tokens_total"))
        == sum(r.completion_tokens for r in good)
        and int(_delta(before, after, "vllm:prompt_tokens_total"))
        == sum(r.prompt_tokens for r in good)
        and int(_delta(before, after, "vllm:request_success_total", finished_reason="length"))
        == total
        and int(ttft_count) == total
    )
    all_ok = len(good) == total
    within = abs(ratio - 1.0) <= 0.10
    client_cpu = (client_after.user - client_before.user) + (
        client_after.system - client_before.system
    )
    # The latency model's own prediction for a lone request: one step prefilling the
    # uncached prompt tokens (the shared system prompt is cached by then).
    predicted_idle = (8.0 + 0.05 * idle_prompt) / 1000.0
    passed = all_ok and within and counters_agree
    if ctx.quick:
        verdict = "PASS (quick: 100 streams, below the 500 target)" if passed else "FAIL"
    else:
        verdict = "PASS" if passed and concurrency >= 500 else "FAIL"
    headline = (
        f"{len(good)}/{total} streams correct at {concurrency} concurrent; /metrics TTFT "
        f"{server_mean:.3f}s vs client {client_mean:.3f}s (ratio {ratio:.3f}, target ±10%); "
        f"sim used {cpu_sim / wall:.0%} of core 0; idle TTFT {idle_ttft * 1000:.1f} ms"
    )
    return {
        "headline": headline,
        "verdict": verdict,
        "concurrency": concurrency,
        "rounds": rounds,
        "max_tokens": max_tokens,
        "max_num_seqs": MAX_NUM_SEQS,
        "prompt_tokens_per_request": good[0].prompt_tokens if good else None,
        "requests": total,
        "requests_correct": len(good),
        "problems": sorted(set(problems))[:10],
        "wall_s": round(wall, 2),
        "requests_per_s": round(total / wall, 1),
        "output_tokens_per_s": round(total * max_tokens / wall, 1),
        "client_ttft_mean_s": round(client_mean, 4),
        "client_ttft_p50_s": round(client_p50, 4),
        "client_ttft_p99_s": round(percentile(client_ttfts, 99), 4),
        "metrics_ttft_mean_s": round(server_mean, 4),
        "metrics_ttft_p50_s_interpolated": round(server_p50, 4),
        "ttft_ratio_metrics_over_client": round(ratio, 4),
        "ttft_p50_ratio": round(server_p50 / client_p50, 4) if client_p50 else None,
        "metrics_counters_agree": counters_agree,
        "peak_running": peaks.get("running"),
        "peak_waiting": peaks.get("waiting"),
        "peak_in_system": peaks.get("in_system"),
        "peak_kv_usage": peaks.get("kv_usage"),
        "preemptions": int(_delta(before, after, "vllm:num_preemptions_total")),
        "prefix_cache_hit_tokens": int(_delta(before, after, "vllm:prefix_cache_hits_total")),
        "sim_cpu_s": round(cpu_sim, 2),
        "sim_cpu_us_per_streamed_token": round(cpu_sim / (total * max_tokens) * 1e6, 1),
        "sim_core_utilisation": round(cpu_sim / wall, 3),
        "client_cpu_s": round(client_cpu, 2),
        "client_core_utilisation": round(client_cpu / wall, 3),
        "pinned": "sim core 0, client core 1" if pinned else "not pinned (1 core)",
        "baseline_idle_ttft_s": round(idle_ttft, 4),
        "baseline_model_idle_ttft_s": round(predicted_idle, 4),
    }
