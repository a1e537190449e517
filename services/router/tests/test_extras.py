"""Embeddings, load-aware routing, tracing and readiness."""

from __future__ import annotations

import asyncio
import collections

import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from arks_common import subjects
from arks_common.events import EngineLoadSnapshot, ReplicaLoad

TOKEN = "sk-extras"
AUTH = {"authorization": f"Bearer {TOKEN}"}


async def test_embeddings_are_proxied_and_charged(sims, routers, state, usage):
    url = await sims.start("m")
    await state.route("m", [url])
    await state.token(TOKEN, ["m"], tpm=100_000)
    router = await routers.start()
    client = router.openai(TOKEN)
    try:
        result = await client.embeddings.create(model="m", input=["first text", "second one"])
    finally:
        await client.close()
    assert len(result.data) == 2
    assert result.usage.prompt_tokens > 0
    [event] = await usage.wait(1)
    assert event.prompt_tokens == result.usage.prompt_tokens
    assert event.completion_tokens == 0


async def test_least_load_follows_engine_load_snapshots(sims, routers, state, usage, bus):
    busy, idle = await sims.start("m"), await sims.start("m")
    await state.route("m", [busy, idle], strategy="leastLoad")
    await state.token(TOKEN, ["m"])
    router = await routers.start()
    snapshot = EngineLoadSnapshot(
        id="load-1",
        namespace="default",
        application="m",
        replicas=[
            ReplicaLoad(replica="0", url=busy, running=50, waiting=20, kv_cache_usage=0.9),
            ReplicaLoad(replica="1", url=idle, running=0, waiting=0),
        ],
    )
    await bus.publish_core(subjects.load_subject("default", "m"), snapshot)
    async with httpx.AsyncClient(base_url=router.admin, timeout=30) as http:
        for _ in range(200):
            if "arks_router_load_snapshots_total 1.0" in (await http.get("/metrics")).text:
                break
            await asyncio.sleep(0.02)
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as http:
        for _ in range(6):
            body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1}
            assert (
                await http.post("/v1/chat/completions", json=body, headers=AUTH)
            ).status_code == 200
    events = await usage.wait(6)
    assert collections.Counter(e.backend for e in events) == {"m-1": 6}


async def test_spans_continue_the_clients_trace(sims, routers, state):
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)  # ours, or one another test installed
    provider.add_span_processor(processor)
    url = await sims.start("m")
    await state.route("m", [url])
    await state.token(TOKEN, ["m"])
    router = await routers.start(telemetry={"otlp_endpoint": "http://127.0.0.1:9/v1/traces"})
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {**AUTH, "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as http:
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1}
        answer = await http.post("/v1/chat/completions", json=body, headers=headers)
    assert answer.status_code == 200
    processor.shutdown()  # stop collecting: the provider is process-wide
    [span] = [s for s in exporter.get_finished_spans() if s.name == "arks.router.request"]
    assert format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert span.attributes["arks.endpoint"] == "m"
    assert span.attributes["arks.request_id"] == answer.headers["x-request-id"]
    assert span.attributes["http.response.status_code"] == 200


async def test_readiness_reports_every_bucket(routers):
    router = await routers.start()
    async with httpx.AsyncClient(base_url=router.admin, timeout=30) as http:
        report = (await http.get("/readyz")).json()
    assert report["ready"] is True
    assert {name for name, ok in report["checks"].items() if ok} == {
        f"kv:{b}"
        for b in (
            subjects.ROUTES_BUCKET,
            subjects.TOKENS_BUCKET,
            subjects.QUOTAS_BUCKET,
            subjects.QUOTA_STATE_BUCKET,
        )
    }


async def test_a_quota_the_router_does_not_know_is_503_not_free(sims, routers, state, usage):
    url = await sims.start("m")
    await state.route("m", [url])
    await state.token(TOKEN, ["m"], quota="not-published-yet")
    router = await routers.start()
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as http:
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        answer = await http.post("/v1/chat/completions", json=body, headers=AUTH)
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "quota_unavailable"
    assert await usage.all() == []
