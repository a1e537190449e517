"""The catalog follows KV snapshots and changes, and matches paths like Gateway API."""

from __future__ import annotations

import pytest

from arks_common import subjects
from arks_common.events import HeaderMatch, PathMatch
from arks_common.messaging import KvChange, KvSnapshot
from arks_common.testing.builders import make_route_table, make_token_grant
from arks_router import api_errors, authenticating
from arks_router.catalog import Catalog, Endpoint
from arks_router.matching import Request


def test_snapshots_replace_and_changes_apply_one_key():
    catalog = Catalog()
    table = make_route_table()
    catalog.apply(
        subjects.ROUTES_BUCKET,
        KvSnapshot({"default.qwen-7b": table.to_bytes(), "default.bad": b"{not json"}),
    )
    assert catalog.endpoint("default", "qwen-7b") is not None
    assert catalog.endpoint("default", "bad") is None  # skipped, not fatal
    assert [e.name for e in catalog.endpoints_in("default")] == ["qwen-7b"]
    dotted = make_route_table(endpoint="qwen2.5-7b")
    catalog.apply(subjects.ROUTES_BUCKET, KvChange("default.qwen2.5-7b", dotted.to_bytes(), 2))
    assert catalog.endpoint("default", "qwen2.5-7b") is not None
    catalog.apply(subjects.ROUTES_BUCKET, KvChange("default.qwen-7b", None, 3))
    assert catalog.endpoint("default", "qwen-7b") is None
    catalog.apply(subjects.ROUTES_BUCKET, KvSnapshot({}))
    assert catalog.routes == {}


def test_tokens_are_found_by_digest_only():
    catalog = Catalog()
    grant = make_token_grant()
    key = authenticating.token_digest(b"sk-secret")
    catalog.apply(subjects.TOKENS_BUCKET, KvSnapshot({key: grant.to_bytes()}))
    assert authenticating.authenticate(catalog, b"Bearer sk-secret") == grant
    assert authenticating.authenticate(catalog, b"bearer  sk-secret ") == grant
    with pytest.raises(api_errors.ApiError) as unknown:
        authenticating.authenticate(catalog, b"Bearer sk-other")
    assert unknown.value.code == "invalid_api_key"
    for header in (None, b"", b"Basic abc", b"Bearer   "):
        with pytest.raises(api_errors.ApiError) as missing:
            authenticating.authenticate(catalog, header)
        assert missing.value.code == "missing_api_key"
    catalog.apply(subjects.TOKENS_BUCKET, KvChange(key, None, 2))
    with pytest.raises(api_errors.ApiError):
        authenticating.authenticate(catalog, b"Bearer sk-secret")


def post(path: str, headers: dict[str, str] | None = None, query: str = "") -> Request:
    encoded = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request("POST", path, encoded, query.encode())


def test_path_matches_follow_gateway_api_semantics():
    endpoint = Endpoint.of(
        make_route_table(
            matches=[
                PathMatch(type="PathPrefix", value="/v1/chat"),
                PathMatch(type="Exact", value="/v1/embeddings"),
                PathMatch(type="RegularExpression", value=r"/v1/re[a-z]+"),
            ]
        )
    )
    assert endpoint.serves(post("/v1/chat"))
    assert endpoint.serves(post("/v1/chat/completions"))
    assert not endpoint.serves(post("/v1/chatter"))
    assert endpoint.serves(post("/v1/embeddings"))
    assert not endpoint.serves(post("/v1/embeddings/x"))
    assert endpoint.serves(post("/v1/rerank"))
    assert not endpoint.serves(post("/v1/rerank2"))
    assert Endpoint.of(make_route_table()).serves(post("/anything/at/all"))


def test_method_header_and_query_matches_must_all_hold():
    endpoint = Endpoint.of(
        make_route_table(
            matches=[
                PathMatch(
                    value="/v1",
                    method="POST",
                    headers=[
                        HeaderMatch(name="X-Tier", value="gold"),
                        HeaderMatch(name="x-tier", value="ignored: only the first counts"),
                        HeaderMatch(type="RegularExpression", name="x-team", value="a|b"),
                    ],
                    query_params=[HeaderMatch(name="Region", value="eu")],
                ),
                PathMatch(type="Exact", value="/v1/x", headers=[HeaderMatch(name="k", value="(")]),
                PathMatch(
                    type="RegularExpression",
                    value="/v1/y",
                    headers=[HeaderMatch(type="RegularExpression", name="k", value="(")],
                ),
            ]
        )
    )
    good = {"x-tier": "gold", "x-team": "b"}
    assert endpoint.serves(post("/v1/chat/completions", good, "Region=eu&Region=us"))
    assert not endpoint.serves(Request("GET", "/v1/chat/completions", [], b"Region=eu"))
    assert not endpoint.serves(post("/v1/chat/completions", good, "region=eu"))
    assert not endpoint.serves(post("/v1/chat/completions", good, "Region=us&Region=eu"))
    assert not endpoint.serves(post("/v1/chat/completions", good))
    assert not endpoint.serves(
        post("/v1/chat/completions", {**good, "x-tier": "Gold"}, "Region=eu")
    )
    assert not endpoint.serves(post("/v1/chat/completions", {**good, "x-team": "ab"}, "Region=eu"))
    assert not endpoint.serves(post("/v1/chat/completions", {"x-team": "a"}, "Region=eu"))
    # A repeated header is matched as its values joined by ",".
    tiers = [(b"x-tier", b"gold"), (b"x-team", b"a")]
    assert endpoint.serves(Request("POST", "/v1/z", tiers, b"Region=eu"))
    twice = Request("POST", "/v1/z", [*tiers, (b"x-tier", b"gold")], b"Region=eu")
    assert not endpoint.serves(twice)
    assert endpoint.serves(post("/v1/x", {"k": "("}))  # Exact: "(" is a plain value
    assert not endpoint.serves(post("/v1/y", {"k": "("}))  # an invalid regex never matches
