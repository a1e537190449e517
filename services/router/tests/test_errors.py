"""Errors a client can branch on: OpenAI's envelope for engine errors and malformed HTTP,
bodies refused before admission, upstream's x-error-* headers, bounded echoes, and a
public port that serves the OpenAI API only."""

from __future__ import annotations

import openai
import pytest

from arks_common.events import QuotaLimit
from arks_common.testing.builders import make_quota_spec

TOKEN = "sk-errors-abcdef"
AUTH = {"authorization": f"Bearer {TOKEN}"}
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
COMPLETION = {"model": "m", "prompt": "once", "max_tokens": 2}
EMBEDDING = {"model": "m", "input": "text"}
RESPONSE = {"model": "m", "input": "hi", "max_output_tokens": 2}


async def test_metrics_and_health_are_on_the_admin_port_only(sims, routers, state, raw):
    url = await sims.start("m")
    await state.route("m", [url])
    await state.token(TOKEN, ["m"])
    router = await routers.start()
    assert router.service is not None
    assert router.service.settings.health.host == "127.0.0.1"  # the default bind
    for path in ("/metrics", "/livez", "/readyz"):
        public = await raw(router.url, "GET", path, headers=AUTH)
        assert public.status == 404, path
        assert public.json()["error"]["code"] == "unknown_route"
    metrics = await raw(router.admin, "GET", "/metrics")
    assert metrics.status == 200
    assert "arks_router_rejections_total" in metrics.body.decode()
    assert (await raw(router.admin, "GET", "/readyz")).json()["ready"] is True
    # The admin port serves nothing of the API.
    assert (await raw(router.admin, "POST", "/v1/chat/completions", body=CHAT)).status == 404


async def test_engine_errors_come_back_in_openai_envelope_with_their_status(sims, routers, state):
    short = await sims.start("m", max_model_len="64")
    await state.route("m", [short])
    refusing = await sims.start("r", fault_error_rate="1", fault_error_status="400")
    await state.route("r", [refusing])
    await state.token(TOKEN, ["m", "r"])
    router = await routers.start()
    client = router.openai(TOKEN)
    try:
        with pytest.raises(openai.BadRequestError) as too_long:
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "word " * 400}], max_tokens=2
            )
        with pytest.raises(openai.BadRequestError) as refused:
            await client.completions.create(model="r", prompt="hello", max_tokens=2)
    finally:
        await client.close()
    assert too_long.value.status_code == 400
    assert too_long.value.type == "invalid_request_error"
    assert too_long.value.code == "context_length_exceeded"
    assert "maximum context length is 64" in too_long.value.message
    body = too_long.value.body
    assert isinstance(body, dict)
    assert set(body) == {"message", "type", "param", "code"}
    assert refused.value.status_code == 400
    assert (refused.value.type, refused.value.code) == ("invalid_request_error", "upstream_error")


INVALID = [
    ("/v1/chat/completions", {**CHAT, "stream": "yes"}, "stream"),
    ("/v1/chat/completions", {**CHAT, "stream": 1}, "stream"),
    ("/v1/chat/completions", {**CHAT, "stream": True, "stream_options": "x"}, "stream_options"),
    (
        "/v1/chat/completions",
        {**CHAT, "stream": True, "stream_options": {"include_usage": "yes"}},
        "stream_options.include_usage",
    ),
    ("/v1/chat/completions", {**CHAT, "max_tokens": "8"}, "max_tokens"),
    ("/v1/chat/completions", {**CHAT, "max_tokens": -1}, "max_tokens"),
    ("/v1/chat/completions", {**CHAT, "max_tokens": 0}, "max_tokens"),
    ("/v1/chat/completions", {**CHAT, "max_tokens": 1.5}, "max_tokens"),
    ("/v1/chat/completions", {**CHAT, "max_completion_tokens": True}, "max_completion_tokens"),
    ("/v1/chat/completions", {**CHAT, "n": 0}, "n"),
    ("/v1/chat/completions", {**CHAT, "n": 1000}, "n"),
    ("/v1/chat/completions", {**CHAT, "messages": "hi"}, "messages"),
    ("/v1/chat/completions", {**CHAT, "messages": []}, "messages"),
    ("/v1/chat/completions", {**CHAT, "messages": ["hi"]}, "messages[0]"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"content": "x"}]}, "messages[0].role"),
    ("/v1/chat/completions", {"model": "m"}, "messages"),
    ("/v1/chat/completions", {**CHAT, "model": 5}, "model"),
    ("/v1/completions", {**COMPLETION, "prompt": 5}, "prompt"),
    ("/v1/completions", {**COMPLETION, "prompt": []}, "prompt"),
    ("/v1/completions", {**COMPLETION, "prompt": [1, "a"]}, "prompt"),
    ("/v1/completions", {**COMPLETION, "stream": "true"}, "stream"),
    ("/v1/completions", {**COMPLETION, "best_of": 0}, "best_of"),
    ("/v1/embeddings", {**EMBEDDING, "input": {}}, "input"),
    ("/v1/embeddings", {**EMBEDDING, "input": [[1, -2]]}, "input"),
    ("/v1/responses", {**RESPONSE, "input": 5}, "input"),
    ("/v1/responses", {**RESPONSE, "input": ["hi"]}, "input[0]"),
    ("/v1/responses", {**RESPONSE, "max_output_tokens": "x"}, "max_output_tokens"),
    ("/v1/responses", {**RESPONSE, "stream": "no"}, "stream"),
    ("/v1/responses", {**RESPONSE, "instructions": ["x"]}, "instructions"),
]


async def test_invalid_bodies_are_refused_before_admission_and_cost_no_rpm(
    sims, taps, routers, state, usage, raw
):
    engine = await taps.start(await sims.start("m"))
    await state.route("m", [engine.url])
    await state.token(TOKEN, ["m"], rpm=2)
    router = await routers.start()
    for path, body, param in INVALID:
        answer = await raw(router.url, "POST", path, headers=AUTH, body=body)
        assert answer.status == 400, (body, answer.body)
        error = answer.json()["error"]
        assert (error["type"], error["code"], error["param"]) == (
            "invalid_request_error",
            "invalid_request",
            param,
        ), body
        assert f"'{param}'" in error["message"]
    assert engine.requests() == []
    assert await usage.all() == []
    for remaining in ("1", "0"):
        ok = await raw(router.url, "POST", "/v1/chat/completions", headers=AUTH, body=CHAT)
        assert ok.status == 200
        assert ok.headers["x-ratelimit-remaining-requests"] == remaining


async def test_malformed_http_gets_an_openai_shaped_400(sims, routers, state, raw):
    await state.token(TOKEN, ["m"])
    router = await routers.start()
    for request in (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nthis is not a header\r\n\r\n",
        b"GET /v1/models HTTP/1.1\r\nhost: x\r\ncontent-length: nope\r\n\r\n",
        b"NOT-HTTP\r\n\r\n",
    ):
        answer = await raw(router.url, "", "", request=request)
        assert answer.status == 400, request
        assert answer.headers["content-type"] == "application/json"
        error = answer.json()["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_http")


async def test_upstreams_x_error_headers_without_the_token(sims, routers, state, raw):
    url = await sims.start("m")
    await state.route("m", [url])
    await state.route("other", [url])
    await state.quota(make_quota_spec(name="tiny", limits=[QuotaLimit(type="total", value=10)]))
    await state.token(TOKEN, ["m"], rpm=1)
    await state.token("sk-quota-123", ["m"], name="q", quota="tiny")
    router = await routers.start()
    secret = "sk-not-a-real-token-987"
    ok = await raw(router.url, "POST", "/v1/chat/completions", headers=AUTH, body=CHAT)
    assert ok.status == 200
    assert not [name for name in ok.headers if name.startswith("x-error-")]
    cases = [
        ({}, CHAT, 401, "x-error-token", "true"),
        ({"authorization": f"Bearer {secret}"}, CHAT, 401, "x-error-token", "true"),
        (AUTH, b"{not json", 400, "x-error-request-body-processing", "true"),
        (AUTH, {**CHAT, "stream": "yes"}, 400, "x-error-request-body-processing", "true"),
        (AUTH, {"messages": CHAT["messages"]}, 400, "x-error-no-model-in-request", "true"),
        (AUTH, {**CHAT, "model": "nope"}, 404, "x-error-no-model-backends", "nope"),
        (AUTH, {**CHAT, "model": "other"}, 403, "x-error-token", "true"),
        (AUTH, CHAT, 429, "x-error-rate-limit", "true"),
        (
            {"authorization": "Bearer sk-quota-123"},
            {**CHAT, "max_tokens": 100},
            429,
            "x-error-quota",
            "true",
        ),
    ]
    for headers, body, status, name, value in cases:
        answer = await raw(router.url, "POST", "/v1/chat/completions", headers=headers, body=body)
        assert answer.status == status, (name, answer.body)
        assert answer.headers[name] == value, (name, answer.headers)
        assert all(secret not in v and TOKEN not in v for v in answer.headers.values())
        assert secret.encode() not in answer.body
    quota = await raw(
        router.url,
        "POST",
        "/v1/chat/completions",
        headers={"authorization": "Bearer sk-quota-123"},
        body={**CHAT, "max_tokens": 100},
    )
    assert (quota.json()["error"]["code"], quota.json()["error"]["type"]) == (
        "insufficient_quota",
        "insufficient_quota",
    )


async def test_unknown_model_names_are_echoed_at_most_256_characters(sims, routers, state, raw):
    url = await sims.start("m")
    await state.route("m", [url])
    await state.token(TOKEN, ["m"])
    router = await routers.start()
    long_name = "x" * 5000
    for path in ("/v1/chat/completions", f"/v1/models/{long_name}"):
        answer = await raw(
            router.url,
            "GET" if path.startswith("/v1/models") else "POST",
            path,
            headers=AUTH,
            body={**CHAT, "model": long_name},
        )
        assert answer.status == 404
        message = answer.json()["error"]["message"]
        assert "x" * 255 in message
        assert "x" * 257 not in message
        assert "x" * 257 not in "".join(answer.headers.values())
