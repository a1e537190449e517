"""Each injected fault does what it says: errors, latency spikes, hangs, crashes, slow
start answering 503, and refusing connections while loading."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest

BODY = {"prompt": "ping", "max_tokens": 4, "ignore_eos": True}


async def test_error_rate_one_fails_every_inference_request(start_sim, openai_schemas):
    async with (
        start_sim(fault_error_rate=1.0, fault_error_status=503) as sim,
        sim.http() as http,
        sim.openai() as client,
    ):
        for path, body in (
            ("/v1/completions", BODY),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}),
            ("/v1/embeddings", {"input": "x"}),
        ):
            response = await http.post(path, json=body)
            assert response.status_code == 503
            openai_schemas.validate("VllmErrorResponse", response.json())
            assert response.json()["error"]["message"].startswith("Injected fault")
        with pytest.raises(openai.InternalServerError):
            await client.completions.create(model=sim.model, prompt="x", max_tokens=2)
        assert (await http.get("/health")).status_code == 200
        metrics = await sim.metrics()
    assert metrics.value("arks_sim:faults_injected_total", kind="error") == 4
    assert metrics.value("vllm:request_success_total") == 0


async def test_partial_error_rate_fails_some_requests(start_sim):
    async with start_sim(fault_error_rate=0.5, seed=1) as sim, sim.http() as http:
        statuses = [(await http.post("/v1/completions", json=BODY)).status_code for _ in range(40)]
        metrics = await sim.metrics()
    assert set(statuses) == {200, 500}
    assert metrics.value("arks_sim:faults_injected_total", kind="error") == statuses.count(500)
    assert metrics.value("vllm:request_success_total") == statuses.count(200)


async def test_latency_spikes_stall_steps(start_sim):
    async def latency(**faults: float) -> tuple[float, float]:
        async with start_sim(time_scale=10, **faults) as sim, sim.http() as http:
            started = time.monotonic()
            response = await http.post("/v1/completions", json={**BODY, "max_tokens": 8})
            assert response.status_code == 200
            elapsed = time.monotonic() - started
            metrics = await sim.metrics()
            return elapsed, metrics.value("arks_sim:faults_injected_total", kind="spike")

    calm, no_spikes = await latency()
    spiky, spikes = await latency(fault_spike_rate=1.0, fault_spike_ms=300.0)
    assert no_spikes == 0
    assert spikes >= 8  # every step of the request stalled
    assert spiky > 3 * calm


async def _data_lines(lines: AsyncIterator[str], count: int) -> AsyncIterator[str]:
    async for line in lines:
        if line.startswith("data: "):
            yield line
            count -= 1
            if count == 0:
                return


async def test_hung_stream_stops_after_n_tokens_and_holds_its_slot(start_sim):
    async with (
        start_sim(fault_hang_rate=1.0, fault_hang_after_tokens=2) as sim,
        sim.http() as http,
    ):
        body = {**BODY, "max_tokens": 50, "stream": True}
        async with http.stream("POST", "/v1/completions", json=body) as response:
            assert response.status_code == 200
            lines = response.aiter_lines()
            texts = [line async for line in _data_lines(lines, 2)]
            hung = await sim.metrics()
            nothing_more = _data_lines(lines, 1)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(nothing_more), 0.4)
        for _ in range(200):  # the client gave up: the sequence is aborted
            after = await sim.metrics()
            if after.value("vllm:num_requests_running") == 0:
                break
            await asyncio.sleep(0.01)
    assert len(texts) == 2
    assert hung.value("vllm:num_requests_running") == 1
    assert hung.value("arks_sim:faults_injected_total", kind="hang") == 1
    assert after.value("vllm:num_requests_running") == 0
    assert after.value("vllm:request_success_total", finished_reason="abort") == 1


async def test_hung_unary_request_never_answers(start_sim):
    async with start_sim(fault_hang_rate=1.0) as sim, sim.http(timeout=0.4) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post("/v1/chat/completions", json={"messages": [{"role": "user"}]})


async def test_crash_after_n_requests_ends_the_process(spawn_sim):
    sim = await spawn_sim(
        "--fault-crash-after", "2", "--fault-crash-exit-code", "3", "--time-scale", "20"
    )
    await sim.wait_healthy()
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        for _ in range(2):
            response = await http.post("/v1/completions", json=BODY)
            assert response.status_code == 200
            assert response.json()["usage"]["completion_tokens"] == 4
        async with asyncio.timeout(10):
            code = await sim.process.wait()
        with pytest.raises(httpx.ConnectError):
            await http.post("/v1/completions", json=BODY)
    assert code == 3
    assert "crashing with exit code 3" in await sim.stderr_text()


async def test_slow_start_answers_503_until_loaded(start_sim, openai_schemas):
    settings = {"startup_delay": 0.6, "time_scale": 1, "wait": "listening"}
    async with start_sim(**settings) as sim, sim.http() as http:
        health = await http.get("/health")
        models = await http.get("/v1/models")
        chat = await http.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}
        )
        metrics = await http.get("/metrics")
        assert not sim.simulator.loaded.is_set()
        await sim.simulator.loaded.wait()
        ready = await http.get("/health")
    assert health.status_code == models.status_code == chat.status_code == 503
    openai_schemas.validate("VllmErrorResponse", chat.json())
    assert chat.json()["error"]["type"] == "ServiceUnavailableError"
    assert metrics.status_code == 200  # scrapes work while loading
    assert ready.status_code == 200


async def test_refuses_connections_while_loading(start_sim, unused_port):
    port = unused_port
    async with (
        start_sim(
            port=port, startup_delay=0.6, time_scale=1, while_loading="refuse", wait="nothing"
        ) as sim,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
    ):
        with pytest.raises(httpx.ConnectError):
            await http.get("/health")
        async with asyncio.timeout(10):
            await sim.simulator.listening.wait()
        assert (await http.get("/health")).status_code == 200


async def test_startup_reads_the_model_directory(start_sim, tmp_path: Path):
    (tmp_path / "model-00001.safetensors").write_bytes(b"\0" * 3_000_000)
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "extra.bin").write_bytes(b"\1" * 1000)
    async with start_sim(model=str(tmp_path), startup_read_model_dir=True) as sim:
        runtime = sim.simulator.app.runtime
        assert runtime is not None
        assert runtime.bytes_read == 3_001_000
        async with sim.http() as http:
            card = (await http.get("/v1/models")).json()["data"][0]
    assert card["id"] == str(tmp_path)  # no --served-model-name: the path itself


async def test_crash_after_zero_exits_once_loaded(spawn_sim):
    sim = await spawn_sim("--fault-crash-after", "0", "--startup-delay", "0.2")
    async with asyncio.timeout(15):
        code = await sim.process.wait()
    assert code == 1
    assert "model loaded" in await sim.stderr_text()
