"""What the router forwards: normal-form paths, known routes, the endpoint's matchConfigs.

Every request here is written byte for byte on a socket (`raw_http`), so no client
library tidies the path first, and every engine sits behind a `Tap` that records the
request lines it was sent: "the engine saw nothing" is read from the wire. rpm is
checked from the `x-ratelimit-remaining-requests` of one good request at the end.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from arks_common.events import HeaderMatch, PathMatch

TOKEN = "sk-surface"
AUTH = {"authorization": f"Bearer {TOKEN}"}
RPM = 50
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
CHAT_AND_COMPLETIONS = [
    PathMatch(type="Exact", value="/v1/chat/completions"),
    PathMatch(type="Exact", value="/v1/completions"),
]


@pytest.fixture
async def rig(sims, taps, routers, state):
    engine = await taps.start(await sims.start("m"))
    await state.route("m", [engine.url], matches=CHAT_AND_COMPLETIONS)
    await state.token(TOKEN, ["m"], rpm=RPM)
    router = await routers.start()
    return router, engine


async def charged(raw, router, expected_remaining: int) -> None:
    """One good chat request: it is answered, and rpm shows what was charged before it."""
    ok = await raw(router.url, "POST", "/v1/chat/completions", headers=AUTH, body=CHAT)
    assert ok.status == 200, ok.body
    assert ok.headers["x-ratelimit-remaining-requests"] == str(expected_remaining)


NOT_NORMAL = [
    ("GET", "/v1/chat/completions/../../../version?model=m"),
    ("POST", "/v1/chat/completions/../../../version?model=m"),
    ("GET", "/v1/chat/completions/%2e%2e/%2e%2e/%2e%2e/version?model=m"),
    ("POST", "/v1/chat/completions/%2E%2E/%2E%2E/%2E%2E/metrics"),
    ("POST", "/v1/chat/completions/..%2f..%2f..%2fversion"),
    ("POST", "/v1/chat/completions/../embeddings"),
    ("POST", "/v1/chat/completions/.."),
    ("POST", "/v1//chat/completions"),
    ("POST", "//v1/chat/completions"),
    ("POST", "/v1/./chat/completions"),
    ("POST", "/v1/chat%2fcompletions"),
    ("POST", "/v1/chat/%63ompletions"),
    ("GET", "/v1/models/../../version"),
    ("GET", "/v1/models/%2e%2e/%2e%2e/metrics"),
]


async def test_a_path_not_in_normal_form_is_400_and_reaches_nothing(rig, raw):
    router, engine = rig
    for method, target in NOT_NORMAL:
        answer = await raw(router.url, method, target, headers=AUTH, body=CHAT)
        assert answer.status == 400, (target, answer.body)
        error = answer.json()["error"]
        assert (error["code"], error["type"]) == ("invalid_path", "invalid_request_error"), target
        assert answer.headers["x-request-id"].startswith("req-")
    assert engine.requests() == []
    await charged(raw, router, RPM - 1)
    assert engine.requests() == ["POST /v1/chat/completions"]


async def test_engine_only_and_unknown_routes_are_404_even_when_matches_allow_them(
    sims, taps, routers, state, raw
):
    engine = await taps.start(await sims.start("m"))
    await state.route("m", [engine.url], matches=[PathMatch(type="PathPrefix", value="/")])
    await state.token(TOKEN, ["m"], rpm=RPM)
    router = await routers.start()
    for method, target in [
        ("GET", "/version?model=m"),
        ("GET", "/metrics?model=m"),
        ("GET", "/health"),
        ("POST", "/tokenize"),
        ("GET", "/v1/files"),
        ("POST", "/v1/audio/speech"),
        ("GET", "/livez"),
        ("GET", "/readyz"),
    ]:
        answer = await raw(
            router.url, method, target, headers={**AUTH, "x-arks-model": "m"}, body=CHAT
        )
        assert answer.status == 404, (target, answer.body)
        error = answer.json()["error"]
        assert error["code"] == "unknown_route"
        assert f"{method} {target.split('?')[0]}" in error["message"]
    # /v1/models is the router's own answer, never the engine's (which names local paths).
    models = await raw(router.url, "GET", "/v1/models", headers=AUTH)
    assert models.status == 200
    assert [(m["id"], m["owned_by"]) for m in models.json()["data"]] == [("m", "default")]
    assert "arks_sim" not in models.body.decode()
    assert engine.requests() == []
    await charged(raw, router, RPM - 1)


async def test_wrong_method_is_405_with_allow_and_trailing_slash_is_404(rig, raw):
    router, engine = rig
    for method, target, allow in [
        ("GET", "/v1/chat/completions", "POST"),
        ("PUT", "/v1/completions", "POST"),
        ("DELETE", "/v1/embeddings", "POST"),
        ("GET", "/v1/responses", "POST"),
        ("POST", "/v1/models", "GET"),
        ("DELETE", "/v1/models/m", "GET"),
    ]:
        answer = await raw(router.url, method, target, headers=AUTH, body=CHAT)
        assert answer.status == 405, (method, target, answer.body)
        assert answer.headers["allow"] == allow
        assert answer.json()["error"]["code"] == "method_not_allowed"
    for method, target in [
        ("POST", "/v1/chat/completions/"),
        ("POST", "/v1/completions/"),
        ("GET", "/v1/models/"),
        ("GET", "/v1/models/m/"),
    ]:
        answer = await raw(router.url, method, target, headers=AUTH, body=CHAT)
        assert answer.status == 404, (target, answer.body)
        assert answer.json()["error"]["code"] == "unknown_route"
    assert engine.requests() == []
    await charged(raw, router, RPM - 1)


async def test_match_configs_match_path_method_headers_and_query(sims, taps, routers, state, raw):
    engine = await taps.start(await sims.start("m"))
    await state.route(
        "m",
        [engine.url],
        matches=[
            PathMatch(
                type="Exact",
                value="/v1/chat/completions",
                method="POST",
                headers=[HeaderMatch(name="X-Tenant-Tier", value="gold")],
            ),
            PathMatch(
                type="PathPrefix",
                value="/v1/completions",
                headers=[HeaderMatch(type="RegularExpression", name="x-team", value="team-[0-9]+")],
            ),
            PathMatch(
                type="RegularExpression",
                value="/v1/emb[a-z]+",
                query_params=[HeaderMatch(name="tier", value="gold")],
            ),
        ],
    )
    await state.route(
        "get-only", [engine.url], matches=[PathMatch(type="PathPrefix", value="/v1", method="GET")]
    )
    await state.token(TOKEN, ["m", "get-only"], rpm=RPM)
    router = await routers.start()
    completion = {"model": "m", "prompt": "once", "max_tokens": 2}
    embedding = {"model": "m", "input": "text"}
    refused = [
        ("/v1/chat/completions", CHAT, {}),
        ("/v1/chat/completions", CHAT, {"x-tenant-tier": "silver"}),
        ("/v1/chat/completions", CHAT, {"x-team": "team-1"}),
        ("/v1/completions", completion, {}),
        ("/v1/completions", completion, {"x-team": "team-x"}),
        ("/v1/completions", completion, {"x-team": "my-team-42"}),  # a full match only
        ("/v1/embeddings", embedding, {}),
        ("/v1/embeddings?tier=silver", embedding, {}),
        ("/v1/chat/completions", {**CHAT, "model": "get-only"}, {}),
    ]
    for target, body, headers in refused:
        answer = await raw(router.url, "POST", target, headers={**AUTH, **headers}, body=body)
        assert answer.status == 404, (target, headers, answer.body)
        error = answer.json()["error"]
        assert error["code"] == "path_not_routed"
        assert f"POST {target.split('?')[0]}" in error["message"]
    assert engine.requests() == []
    served = [
        ("/v1/chat/completions", CHAT, {"X-TENANT-TIER": "gold"}),  # names are case-insensitive
        ("/v1/completions", completion, {"x-team": "team-42"}),
        ("/v1/embeddings?tier=gold", embedding, {}),
    ]
    for target, body, headers in served:
        answer = await raw(router.url, "POST", target, headers={**AUTH, **headers}, body=body)
        assert answer.status == 200, (target, answer.body)
        assert answer.headers["x-ratelimit-remaining-requests"] == str(
            RPM - 1 - served.index((target, body, headers))
        )
    assert engine.requests() == [
        "POST /v1/chat/completions",
        "POST /v1/completions",
        "POST /v1/embeddings?tier=gold",
    ]


async def test_models_report_the_endpoints_creation_time(sims, routers, state, raw):
    created = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    url = await sims.start("m")
    await state.route("m", [url], created_at=created)
    await state.route("legacy", [url])  # published by an older reconciler: no time known
    await state.token(TOKEN, ["m", "legacy"])
    router = await routers.start()
    listed = await raw(router.url, "GET", "/v1/models", headers=AUTH)
    one = await raw(router.url, "GET", "/v1/models/m", headers=AUTH)
    assert {m["id"]: m["created"] for m in listed.json()["data"]} == {
        "legacy": 0,
        "m": int(created.timestamp()),
    }
    assert one.json()["created"] == int(created.timestamp())
