"""Route tables, token grants and quota specs built from resources."""

from __future__ import annotations

from decimal import Decimal

from arks_common import events, ledger, resources
from arks_reconciler import publications
from arks_reconciler.platform import Backend
from arks_reconciler.publications import AppBackends
from arks_reconciler.testing import endpoint_obj, quota_obj, token_obj, typed


def apps(**named: AppBackends) -> dict[str, AppBackends]:
    return dict(named)


def backends(*ports: int) -> tuple[Backend, ...]:
    return tuple(Backend(replica=f"r{p}", url=f"http://127.0.0.1:{p}") for p in ports)


def test_every_ready_replica_of_matching_apps_is_a_backend() -> None:
    endpoint = typed(endpoint_obj(defaultWeight=5, strategy="leastLoad", sessionHeader="x-user"))
    routing = publications.endpoint_routing(
        endpoint,
        apps(
            a=AppBackends("a", "qwen-7b", backends(1, 2)),
            b=AppBackends("b", "qwen-7b", backends(3)),
            other=AppBackends("other", "llama", backends(4)),
            gone=AppBackends("gone", "qwen-7b", backends(5), deleting=True),
        ),
        [],
    )
    table = routing.table
    assert [b.url for b in table.backends] == [
        "http://127.0.0.1:1",
        "http://127.0.0.1:2",
        "http://127.0.0.1:3",
    ]
    assert {b.weight for b in table.backends} == {5}
    assert {b.source for b in table.backends} == {"discovered"}
    assert [b.replica for b in table.backends] == ["r1", "r2", "r3"]
    # each replica carries its application and the application's weight: the router
    # splits by application first (weights apply per application, not per replica)
    assert [(b.application, b.weight) for b in table.backends] == [("a", 5), ("a", 5), ("b", 5)]
    assert (table.strategy, table.session_header) == ("leastLoad", "x-user")
    assert [m.value for m in table.matches] == ["/"]
    assert [r.name for r in routing.status_routes] == [
        "arks-application-a",
        "arks-application-b",
    ]
    assert routing.status_routes[0].port == 8080


def test_apps_without_ready_replicas_are_not_routed() -> None:
    endpoint = typed(endpoint_obj())
    routing = publications.endpoint_routing(endpoint, apps(a=AppBackends("a", "qwen-7b", ())), [])
    assert routing.table.backends == []
    assert routing.status_routes == []


def test_static_routes_and_app_services_named_statically() -> None:
    endpoint = typed(
        endpoint_obj(
            routeConfigs=[
                {"name": "my-svc", "port": 9000, "weight": 60},
                {"name": "no-port", "kind": "Backend", "group": "gateway.envoyproxy.io"},
                {"name": "arks-application-a", "port": 8080, "weight": 7},
            ],
            matchConfigs=[{"path": {"type": "PathPrefix", "value": "/v1/chat/completions"}}],
        )
    )
    routing = publications.endpoint_routing(
        endpoint,
        apps(
            a=AppBackends("a", "qwen-7b", backends(1)), b=AppBackends("b", "qwen-7b", backends(2))
        ),
        ["http://127.0.0.1:9000", None, "ignored"],
    )
    by_name = [(b.name, b.url, b.weight, b.source) for b in routing.table.backends]
    assert by_name == [
        ("my-svc", "http://127.0.0.1:9000", 60, "static"),
        ("a", "http://127.0.0.1:1", 7, "static"),
        ("b", "http://127.0.0.1:2", 1, "discovered"),
    ]
    assert routing.unresolved == ["no-port"]
    assert routing.table.matches[0].value == "/v1/chat/completions"


def test_route_table_carries_whole_match_configs_and_the_creation_time() -> None:
    obj = endpoint_obj(
        matchConfigs=[
            {
                "path": {"type": "Exact", "value": "/v1/chat/completions"},
                "method": "POST",
                "headers": [
                    {"name": "x-tier", "value": "gold"},
                    {"type": "RegularExpression", "name": "x-team", "value": "t-[0-9]+"},
                ],
                "queryParams": [{"name": "region", "value": "eu"}],
            },
            {"path": {"type": "PathPrefix", "value": "/v1/completions"}},
        ]
    )
    obj["metadata"]["creationTimestamp"] = "2025-03-04T05:06:07Z"
    table = publications.endpoint_routing(typed(obj), apps(), []).table
    chat, completions = table.matches
    assert (chat.type, chat.value, chat.method) == ("Exact", "/v1/chat/completions", "POST")
    assert [(h.type, h.name, h.value) for h in chat.headers] == [
        ("Exact", "x-tier", "gold"),
        ("RegularExpression", "x-team", "t-[0-9]+"),
    ]
    assert [(q.type, q.name, q.value) for q in chat.query_params] == [("Exact", "region", "eu")]
    assert (completions.method, completions.headers, completions.query_params) == (None, [], [])
    assert table.created_at is not None
    assert table.created_at.isoformat() == "2025-03-04T05:06:07+00:00"
    # What the router decodes from arks-routes is what was published.
    assert events.RouteTable.from_bytes(table.to_bytes()) == table


def test_token_grant_has_no_secret() -> None:
    token = typed(token_obj())
    grant = publications.token_grant(token)
    assert "sk-test123456" not in grant.to_bytes().decode()
    assert grant.namespace == "default"
    assert grant.token_name == "example-token"
    entry = grant.grant_for("qwen-7b")
    assert entry is not None
    assert entry.quota == "basic-quota"
    assert {(r.type, r.value) for r in entry.rate_limits} == {("rpm", 60), ("tpm", 40000)}


def test_duplicate_token_strings_lose_to_the_oldest() -> None:
    old = typed(token_obj("old", creationTimestamp="2026-01-01T00:00:00Z"))
    new = typed(token_obj("new", creationTimestamp="2026-02-01T00:00:00Z", namespace="team"))
    other = typed(token_obj("other", token="sk-other"))
    owners, losers = publications.token_owners([new, other, old])
    assert owners[resources.hash_token("sk-test123456")].name == "old"
    assert owners[resources.hash_token("sk-other")].name == "other"
    assert losers == {("team", "new"): old}


def test_quota_spec_with_budget_and_prices() -> None:
    quota = typed(
        quota_obj(
            budget={"limit": "25.50", "currency": "EUR"},
            prices=[{"endpoint": "qwen-7b", "prompt": "0.50", "completion": "1.50"}],
            resetPeriod="daily",
        )
    )
    spec = publications.quota_spec(quota)
    assert [(limit.type, limit.value) for limit in spec.limits] == [
        ("prompt", 100000),
        ("response", 500000),
        ("total", 600000),
    ]
    assert spec.budget_nanos == ledger.to_nanos(Decimal("25.50"))
    assert spec.currency == "EUR"
    price = spec.price_for("qwen-7b")
    assert price is not None
    assert price.cached_prompt == Decimal("0.50")  # defaults to the prompt price
    assert spec.price_version == quota.spec.price_version()
    assert spec.reset_period == "daily"


def test_quota_without_prices_has_no_price_version() -> None:
    spec = publications.quota_spec(typed(quota_obj()))
    assert spec.budget_nanos is None
    assert spec.price_version == ""
