"""Every way a request can fail answers correctly and loses no usage."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from arks_common.embedded import free_port

TOKEN = "sk-failures"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def chat(max_tokens: int = 4, **extra: object) -> dict[str, object]:
    return {
        "model": "m",
        "messages": [{"role": "user", "content": "tell me something"}],
        "max_tokens": max_tokens,
        **extra,
    }


async def metric(url: str, name: str, **labels: str) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(url + "/metrics")).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def test_upstream_down_answers_502_and_releases_the_reservation(routers, state, usage):
    dead = f"http://127.0.0.1:{free_port()}"
    await state.route("m", [dead])
    await state.token(TOKEN, ["m"], tpm=100_000)
    router = await routers.start()
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as http:
        answer = await http.post("/v1/chat/completions", json=chat(), headers=AUTH)
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "upstream_unreachable"
    [event] = await usage.wait(1)
    assert event.id == answer.headers["x-request-id"]
    assert event.outcome == "upstream_error"
    assert (event.prompt_tokens, event.completion_tokens, event.usage_source) == (0, 0, "none")
    assert event.reserved_tokens > 0


async def test_upstream_500_keeps_its_status_in_the_openai_envelope(sims, routers, state, usage):
    url = await sims.start("m", fault_error_rate="1", fault_error_status="500")
    await state.route("m", [url])
    await state.token(TOKEN, ["m"])
    router = await routers.start()
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as http:
        answer = await http.post("/v1/chat/completions", json=chat(), headers=AUTH)
    assert answer.status_code == 500
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    [event] = await usage.wait(1)
    assert (event.outcome, event.status_code) == ("upstream_error", 500)


async def test_failures_before_the_first_byte_retry_elsewhere_and_eject(
    sims, routers, state, usage
):
    good = await sims.start("m")
    failing = await sims.start("m", fault_error_rate="1", fault_error_status="503")
    dead = f"http://127.0.0.1:{free_port()}"
    await state.route("m", [failing, dead, good], strategy="weighted")
    await state.token(TOKEN, ["m"])
    router = await routers.start()
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as http:
        answers = [
            await http.post("/v1/chat/completions", json=chat(), headers=AUTH) for _ in range(12)
        ]
    # Each request may hit one bad backend first and is then retried once; with two
    # bad backends of three, only a request whose two first picks are both bad fails,
    # and after three failures each bad backend is ejected, so most succeed.
    ok = [a for a in answers if a.status_code == 200]
    assert len(ok) >= 9
    assert all(a.status_code in (200, 502, 503) for a in answers)
    assert await metric(router.admin, "arks_router_backend_ejections_total") >= 1
    assert await metric(router.admin, "arks_router_retries_total") >= 1
    events = await usage.wait(12)
    assert {e.backend for e in events if e.outcome == "success"} == {"m-2"}


async def test_client_disconnect_mid_stream_cancels_the_engine_and_charges_what_streamed(
    sims, routers, state, usage
):
    url = await sims.start("m", time_scale="1")
    await state.route("m", [url])
    await state.token(TOKEN, ["m"], tpm=1_000_000)
    router = await routers.start()
    received = 0
    async with (
        httpx.AsyncClient(base_url=router.url, timeout=10) as http,
        http.stream(
            "POST", "/v1/chat/completions", json=chat(2000, stream=True), headers=AUTH
        ) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                received += 1
            if received >= 4:
                break
    [event] = await usage.wait(1)
    assert event.outcome == "cancelled"
    assert event.stream
    assert 3 <= event.completion_tokens < 2000
    assert event.prompt_tokens > 0
    # The engine saw the disconnect and aborted the sequence.
    for _ in range(100):
        if await metric(url, "vllm:request_success_total", finished_reason="abort") == 1:
            break
        await asyncio.sleep(0.05)
    assert await metric(url, "vllm:request_success_total", finished_reason="abort") == 1
    assert await metric(url, "vllm:num_requests_running") == 0


async def test_a_stream_that_breaks_is_counted_from_what_was_streamed(sims, routers, state, usage):
    url = await sims.start("m", fault_hang_rate="1", fault_hang_after_tokens="5")
    await state.route("m", [url])
    await state.token(TOKEN, ["m"], tpm=1_000_000)
    router = await routers.start(upstream={"read_timeout": 1.0})
    async with httpx.AsyncClient(base_url=router.url, timeout=10) as http:
        answer = await http.post("/v1/chat/completions", json=chat(50, stream=True), headers=AUTH)
    assert answer.status_code == 200
    assert "upstream_stream_broken" in answer.text.splitlines()[-2]
    [event] = await usage.wait(1)
    assert (event.outcome, event.usage_source) == ("upstream_error", "estimated")
    assert event.completion_tokens == 5
    assert event.prompt_tokens > 0


@pytest.mark.parametrize("mode", ["closed", "open"])
async def test_valkey_down(sims, routers, state, usage, valkey_server, mode):
    url = await sims.start("m")
    await state.route("m", [url])
    await state.token(TOKEN, ["m"], rpm=100)
    router = await routers.start(redis={"fail_mode": mode})
    valkey_server.stop()
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as http:
        answer = await http.post("/v1/chat/completions", json=chat(), headers=AUTH)
        again = await http.post("/v1/chat/completions", json=chat(), headers=AUTH)
    if mode == "closed":
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "governance_unavailable"
        assert answer.headers["retry-after"] == "1"
        assert again.status_code == 503
        assert await usage.all() == []
    else:
        assert (answer.status_code, again.status_code) == (200, 200)
        events = await usage.wait(2)
        assert all(e.completion_tokens == 4 for e in events)
    assert await metric(router.admin, "arks_router_governance_unavailable_total") == 2
    valkey_server.start()  # a new process: its script cache is empty
    await asyncio.sleep(1.1)  # the breaker's pause
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as http:
        recovered = await http.post("/v1/chat/completions", json=chat(), headers=AUTH)
    assert recovered.status_code == 200
    assert recovered.headers["x-ratelimit-limit-requests"] == "100"
