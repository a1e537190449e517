"""The OpenAI API through a real router, real engine simulators and the openai client."""

from __future__ import annotations

import httpx
import openai
import pytest

from arks_common import subjects

TOKEN = "sk-test-123456"


@pytest.fixture
async def gateway(sims, routers, state):
    url = await sims.start("m")
    await state.route("m", [url])
    await state.route("other", [url])
    await state.route("m", [url], namespace="tenant-b")
    await state.token(TOKEN, ["m"], rpm=1000, tpm=10_000_000)
    return await routers.start()


async def test_chat_and_completions_unary_and_streaming(gateway, usage):
    client = gateway.openai(TOKEN)
    try:
        chat = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hello"}], max_tokens=8
        )
        assert chat.usage is not None
        assert chat.usage.completion_tokens == 8
        text = await client.completions.create(model="m", prompt="once upon", max_tokens=4)
        assert text.usage is not None
        assert text.usage.completion_tokens == 4
        stream = await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "stream please"}],
            max_tokens=6,
            stream=True,
        )
        chunks = [chunk async for chunk in stream]
        # The router injected include_usage and stripped the usage chunk again.
        assert all(chunk.usage is None for chunk in chunks)
        assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 6
        asked = await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "stream with usage"}],
            max_tokens=3,
            stream=True,
            stream_options={"include_usage": True},
        )
        usage_chunks = [c.usage for c in [chunk async for chunk in asked] if c.usage]
        assert len(usage_chunks) == 1
        assert usage_chunks[0].completion_tokens == 3
    finally:
        await client.close()
    events = await usage.wait(4)
    assert [e.completion_tokens for e in events] == [8, 4, 6, 3]
    assert all(e.usage_source == "engine" and e.outcome == "success" for e in events)
    assert [e.stream for e in events] == [False, False, True, True]
    assert all(e.token_name == "tok" and e.namespace == "default" for e in events)
    assert all(e.prompt_tokens > 0 and e.backend == "m-0" for e in events)
    # Routing can be seen from the router: the replica that served is named.
    assert all(e.replica == "m-0-replica" for e in events)
    async with httpx.AsyncClient(base_url=gateway.admin, timeout=30) as http:
        metrics = (await http.get("/metrics")).text
    served = (
        'arks_router_replica_requests_total{backend="m-0",endpoint="m",namespace="default",'
        'replica="m-0-replica"} 4.0'
    )
    assert served in metrics


async def test_every_response_has_a_request_id_matching_the_usage_event(gateway, usage):
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        ok = await http.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2},
            headers={"authorization": f"Bearer {TOKEN}"},
        )
        denied = await http.post("/v1/chat/completions", json={"model": "m"})
        health = await http.get("/livez")
    assert ok.status_code == 200
    assert ok.headers["x-request-id"].startswith("req-")
    assert denied.headers["x-request-id"].startswith("req-")
    assert health.headers["x-request-id"].startswith("req-")
    assert ok.headers["x-ratelimit-limit-requests"] == "1000"
    assert ok.headers["x-ratelimit-remaining-requests"] == "999"
    [event] = await usage.wait(1)
    assert event.id == ok.headers["x-request-id"]


async def test_models_lists_only_granted_endpoints_of_the_namespace(gateway, state):
    await state.token("sk-two", ["m", "other", "missing"], name="two")
    client = gateway.openai("sk-two")
    try:
        listed = [m.id async for m in client.models.list()]
        assert listed == ["m", "other"]
        assert (await client.models.retrieve("other")).id == "other"
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("missing")
    finally:
        await client.close()


async def test_auth_and_request_errors(gateway, usage, bus):
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        auth = {"authorization": f"Bearer {TOKEN}"}
        missing = await http.post("/v1/chat/completions", json=body)
        unknown = await http.post(
            "/v1/chat/completions", json=body, headers={"authorization": "Bearer sk-nope-secret"}
        )
        bad_json = await http.post("/v1/chat/completions", content=b"{not json", headers=auth)
        not_object = await http.post("/v1/chat/completions", json=[1, 2], headers=auth)
        no_model = await http.post("/v1/chat/completions", json={"messages": []}, headers=auth)
        not_granted = await http.post(
            "/v1/chat/completions", json={**body, "model": "other"}, headers=auth
        )
        unknown_model = await http.post(
            "/v1/chat/completions", json={**body, "model": "nope"}, headers=auth
        )
        too_big = await http.post(
            "/v1/chat/completions",
            json={**body, "messages": [{"role": "user", "content": "x" * (17 * 1024 * 1024)}]},
            headers=auth,
        )
        models_unauth = await http.get("/v1/models")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_api_key"
    assert unknown.status_code == 401
    assert unknown.json()["error"]["code"] == "invalid_api_key"
    assert "sk-nope-secret" not in unknown.text
    assert all("sk-nope-secret" not in v for v in unknown.headers.values())
    assert (bad_json.status_code, bad_json.json()["error"]["code"]) == (400, "invalid_json")
    assert (not_object.status_code, not_object.json()["error"]["code"]) == (400, "invalid_request")
    assert (no_model.status_code, no_model.json()["error"]["code"]) == (400, "missing_model")
    assert (not_granted.status_code, not_granted.json()["error"]["code"]) == (
        403,
        "model_not_permitted",
    )
    assert (unknown_model.status_code, unknown_model.json()["error"]["code"]) == (
        404,
        "model_not_found",
    )
    assert (too_big.status_code, too_big.json()["error"]["code"]) == (413, "request_too_large")
    assert models_unauth.status_code == 401
    # Nothing was admitted, so nothing was charged or published.
    assert await usage.all() == []
    info = await bus.js.stream_info(subjects.USAGE_STREAM)
    assert info.state.messages == 0


async def test_other_namespaces_are_invisible(sims, routers, state):
    url = await sims.start("m")
    await state.route("private", [url], namespace="tenant-b")
    await state.token("sk-a", ["private"], namespace="tenant-a", name="a")
    router = await routers.start()
    client = router.openai("sk-a")
    try:
        with pytest.raises(openai.NotFoundError) as hidden:
            await client.chat.completions.create(
                model="private", messages=[{"role": "user", "content": "x"}]
            )
        assert hidden.value.code == "model_not_found"
        assert [m.id async for m in client.models.list()] == []
    finally:
        await client.close()
