"""Invalid resources are refused with messages that name the field and say why.

Each case is also checked against the generated openAPIV3Schema where JSON Schema can
express the rule, so the local platform (models) and Kubernetes (CRD) refuse the same input.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arks_common.crds import openapi_schema
from arks_common.resources import (
    ArksQuota,
    Price,
    ResourceError,
    parse_resource,
    price_version,
)


def app(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "arks.ai/v1",
        "kind": "ArksApplication",
        "metadata": {"name": "a"},
        "spec": {"model": {"name": "m"}, **spec},
    }


def token(qos: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "arks.ai/v1",
        "kind": "ArksToken",
        "metadata": {"name": "t"},
        "spec": {"token": "sk-1", "qos": qos},
    }


def quota(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "arks.ai/v1",
        "kind": "ArksQuota",
        "metadata": {"name": "q"},
        "spec": spec,
    }


def endpoint(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "arks.ai/v1",
        "kind": "ArksEndpoint",
        "metadata": {"name": "e"},
        "spec": spec,
    }


def dapp(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "arks.ai/v1",
        "kind": "ArksDisaggregatedApplication",
        "metadata": {"name": "d"},
        "spec": {"model": {"name": "m"}, "prefill": {}, "decode": {}, **spec},
    }


def model(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "arks.ai/v1",
        "kind": "ArksModel",
        "metadata": {"name": "m"},
        "spec": {"model": "a/b", **spec},
    }


PRICE = {"endpoint": "e", "prompt": "0.15", "completion": "0.60"}

# (object, expected fragment of the message, whether the CRD schema alone refuses it too;
# False marks rules only the models and the API server's list-map keys check).
INVALID: list[tuple[str, dict[str, Any], str, bool]] = [
    (
        "rate limit type",
        token([{"arksEndpoint": {"name": "e"}, "rateLimits": [{"type": "rph", "value": 1}]}]),
        "spec.qos[0].rateLimits[0].type: Input should be 'rpm', 'rpd', 'tpm' or 'tpd' (got 'rph')",
        True,
    ),
    (
        "negative rate limit",
        token([{"arksEndpoint": {"name": "e"}, "rateLimits": [{"type": "rpm", "value": -1}]}]),
        "spec.qos[0].rateLimits[0].value: Input should be greater than or equal to 0",
        True,
    ),
    (
        "duplicate rate limit",
        token(
            [
                {
                    "arksEndpoint": {"name": "e"},
                    "rateLimits": [{"type": "rpm", "value": 1}, {"type": "rpm", "value": 2}],
                }
            ]
        ),
        "spec.qos[0].rateLimits: type 'rpm' is listed twice",
        False,
    ),
    (
        "empty token",
        {**token([]), "spec": {"token": "", "qos": []}},
        "spec.token: must not be empty",
        True,
    ),
    (
        "quota type",
        quota(quotas=[{"type": "tokens", "value": 1}]),
        "spec.quotas[0].type: Input should be 'prompt', 'response' or 'total' (got 'tokens')",
        True,
    ),
    (
        "negative quota",
        quota(quotas=[{"type": "total", "value": -5}]),
        "spec.quotas[0].value: Input should be greater than or equal to 0",
        True,
    ),
    (
        "no quotas nor budget",
        quota(),
        "spec.quotas: an ArksQuota needs at least one of quotas",
        True,
    ),
    (
        "empty quotas, no budget",
        quota(quotas=[]),
        "spec.quotas: an ArksQuota needs at least one of",
        True,
    ),
    (
        "duplicate quota type",
        quota(quotas=[{"type": "total", "value": 1}, {"type": "total", "value": 2}]),
        "spec.quotas[1].type: 'total' is listed twice",
        False,
    ),
    (
        "negative price",
        quota(budget={"limit": "1"}, prices=[{**PRICE, "prompt": "-1"}]),
        "spec.prices[0].prompt: must be a non-negative decimal string with at most 12 decimal "
        "places",
        True,
    ),
    (
        "13 decimal places",
        quota(budget={"limit": "1"}, prices=[{**PRICE, "completion": "0.1234567890123"}]),
        "spec.prices[0].completion: must be a non-negative decimal string",
        True,
    ),
    (
        "price as a number",
        quota(budget={"limit": "1"}, prices=[{**PRICE, "prompt": 0.5}]),
        "spec.prices[0].prompt: must be a non-negative decimal string with at most 12 decimal "
        'places, such as "0.15" (quote it in YAML) (got 0.5)',
        True,
    ),
    (
        "exponent notation",
        quota(budget={"limit": "1E+2"}),
        "spec.budget.limit: must be a non-negative",
        True,
    ),
    (
        "bad currency",
        quota(budget={"limit": "1", "currency": "usd"}),
        "spec.budget.currency: String should match",
        True,
    ),
    (
        "duplicate price",
        quota(budget={"limit": "1"}, prices=[PRICE, PRICE]),
        "spec.prices[1].endpoint: 'e' is listed twice",
        False,
    ),
    (
        "negative replicas",
        app(replicas=-1),
        "spec.replicas: Input should be greater than or equal to 0",
        True,
    ),
    ("string replicas", app(replicas="2"), "spec.replicas: Input should be a valid integer", True),
    (
        "unknown runtime",
        app(runtime="tgi"),
        "spec.runtime: Input should be 'vllm', 'sglang', 'dynamo' or 'sim' (got 'tgi')",
        True,
    ),
    (
        "unknown driver",
        app(driver="k8s"),
        "spec.driver: Input should be 'lws', 'rbg' or 'deployment'",
        True,
    ),
    ("missing model", {**app(), "spec": {}}, "spec.model: required", True),
    (
        "reserved volume name",
        app(instanceSpec={"volumes": [{"name": "cache"}, {"name": "models", "emptyDir": {}}]}),
        "spec.instanceSpec.volumes[1].name: 'models' is reserved for the model volume",
        True,
    ),
    (
        "reserved mount path",
        app(instanceSpec={"volumeMounts": [{"name": "x", "mountPath": "/models"}]}),
        "spec.instanceSpec.volumeMounts[0].mountPath: '/models' is reserved",
        True,
    ),
    (
        "reserved mount path, trailing slash",
        app(instanceSpec={"volumeMounts": [{"name": "x", "mountPath": "/models/"}]}),
        "spec.instanceSpec.volumeMounts[0].mountPath: '/models' is reserved",
        True,
    ),
    (
        "reserved volume on prefill",
        dapp(prefill={"instanceSpec": {"volumes": [{"name": "models"}]}}),
        "spec.prefill.instanceSpec.volumes[0].name: 'models' is reserved",
        True,
    ),
    (
        "disaggregated runtime",
        dapp(runtime="vllm"),
        "spec.runtime: Input should be 'sglang' or 'sim' (got 'vllm')",
        True,
    ),
    (
        "router port conflict",
        dapp(router={"int32": 8080, "port": 9000}),
        "spec.router.port: given both as `port` and as `int32`",
        False,
    ),
    (
        "router port range",
        dapp(router={"int32": 0}),
        "spec.router.int32: Input should be greater than or equal to 1",
        True,
    ),
    (
        "autoscaling bounds",
        app(autoscaling={"minReplicas": 3, "maxReplicas": 2}),
        "spec.autoscaling.maxReplicas: must be >= minReplicas (2 < 3)",
        False,
    ),
    (
        "autoscaling enabled, incomplete",
        app(autoscaling={"enabled": True, "maxReplicas": 4}),
        "spec.autoscaling: metric, target: required when enabled is true",
        True,
    ),
    (
        "autoscaling metric",
        app(autoscaling={"metric": "gpuUtil"}),
        "spec.autoscaling.metric: Input should be",
        True,
    ),
    (
        "autoscaling target",
        app(autoscaling={"target": 0}),
        "spec.autoscaling.target: Input should be greater than 0",
        True,
    ),
    (
        "17 matchConfigs",
        endpoint(matchConfigs=[{"path": {"value": f"/v{i}"}} for i in range(17)]),
        "spec.matchConfigs: List should have at most 16 items after validation, not 17",
        True,
    ),
    (
        "17 routeConfigs",
        endpoint(routeConfigs=[{"name": f"s{i}", "port": 80} for i in range(17)]),
        "spec.routeConfigs: List should have at most 16 items",
        True,
    ),
    (
        "negative default weight",
        endpoint(defaultWeight=-1),
        "spec.defaultWeight: Input should be greater than or equal to 0",
        True,
    ),
    (
        "backend weight too high",
        endpoint(routeConfigs=[{"name": "s", "port": 80, "weight": 1000001}]),
        "spec.routeConfigs[0].weight: Input should be less than or equal to 1000000",
        True,
    ),
    (
        "service backend without port",
        endpoint(routeConfigs=[{"name": "s"}]),
        "spec.routeConfigs[0].port: required for a Service backend",
        False,
    ),
    (
        "relative path match",
        endpoint(matchConfigs=[{"path": {"type": "PathPrefix", "value": "v1"}}]),
        "spec.matchConfigs[0].path.value: must be an absolute path",
        False,
    ),
    (
        "path match with //",
        endpoint(matchConfigs=[{"path": {"value": "/v1//x"}}]),
        "spec.matchConfigs[0].path.value: must not contain '//'",
        False,
    ),
    (
        "unknown strategy",
        endpoint(strategy="random"),
        "spec.strategy: Input should be 'auto', 'weighted', 'leastLoad', 'prefixAffinity' "
        "or 'sessionAffinity'",
        True,
    ),
    (
        "bad header name",
        endpoint(matchConfigs=[{"headers": [{"name": "a b", "value": "x"}]}]),
        "spec.matchConfigs[0].headers[0].name: String should match pattern",
        True,
    ),
    (
        "subPath escaping",
        model(storage={"subPath": "../etc"}),
        "spec.storage.subPath: must not contain a '..' segment",
        True,
    ),
    (
        "relative localPath",
        model(storage={"localPath": "data/qwen"}),
        "spec.storage.localPath: String should match pattern '^/'",
        True,
    ),
    ("empty model", model(model=""), "spec.model: String should have at least 1 character", True),
    (
        "bad name",
        {**model(), "metadata": {"name": "Qwen_7B"}},
        "metadata.name: String should match pattern",
        False,
    ),
]


@pytest.mark.parametrize(
    ("case", "obj", "expected", "in_schema"), INVALID, ids=[c[0] for c in INVALID]
)
def test_invalid_resource_is_refused_naming_the_field(
    case: str, obj: dict[str, Any], expected: str, in_schema: bool
) -> None:
    with pytest.raises(ResourceError) as info:
        parse_resource(copy.deepcopy(obj))
    assert expected in str(info.value), f"{case}: {info.value}"
    schema_errors = list(jsonschema.Draft4Validator(openapi_schema(obj["kind"])).iter_errors(obj))
    if in_schema:
        assert schema_errors, f"{case}: the CRD schema accepts what the model refuses"


def test_quota_with_only_a_budget_is_valid_in_model_and_schema() -> None:
    obj = quota(budget={"limit": "25.00"}, prices=[PRICE], resetPeriod="monthly")
    parsed = parse_resource(obj)
    assert isinstance(parsed, ArksQuota)
    assert parsed.spec.quotas == []
    assert parsed.spec.budget is not None
    assert parsed.spec.budget.limit == Decimal("25.00")
    assert parsed.spec.budget.currency == "USD"
    jsonschema.Draft4Validator(openapi_schema("ArksQuota")).validate(obj)


def test_price_version_is_stable_and_canonical() -> None:
    a = Price(endpoint="a", prompt=Decimal("0.50"), completion=Decimal("1"))
    a_same = Price.model_validate(
        {"endpoint": "a", "prompt": "0.5", "cachedPrompt": "0.500", "completion": "1.0"}
    )
    b = Price.model_validate({"endpoint": "b", "prompt": "2", "completion": "3"})
    version = price_version([a, b])
    assert len(version) == 16
    assert int(version, 16) >= 0
    assert price_version([b, a_same]) == version  # order and notation do not matter
    assert price_version([a, b.model_copy(update={"completion": Decimal("3.01")})]) != version
    assert price_version([]) != version
    q = ArksQuota.model_validate(
        {
            "metadata": {"name": "q"},
            "spec": {
                "budget": {"limit": "1"},
                "prices": [{"endpoint": "a", "prompt": "0.5", "completion": "1"}],
            },
        }
    )
    assert q.spec.price_version() == price_version([a])


def test_price_cost_is_exact() -> None:
    price = Price.model_validate(
        {"endpoint": "e", "prompt": "0.15", "cachedPrompt": "0.075", "completion": "0.60"}
    )
    # 1000 prompt tokens of which 400 cached, 500 completion tokens.
    assert price.cost(1000, 500, cached_prompt_tokens=400) == Decimal("0.00042")
    no_cache_price = Price.model_validate({"endpoint": "e", "prompt": "3", "completion": "15"})
    assert no_cache_price.cost(1_000_000, 0, cached_prompt_tokens=10) == Decimal("3")
    with pytest.raises(ValueError, match="token counts must be >= 0"):
        price.cost(-1, 0)


def test_period_start_in_utc() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    spec = ArksQuota.model_validate(
        {"metadata": {"name": "q"}, "spec": {"budget": {"limit": "1"}, "resetPeriod": "daily"}}
    ).spec
    local = datetime(2026, 3, 1, 1, 30, tzinfo=timezone(timedelta(hours=3)))  # 2026-02-28 22:30Z
    assert spec.period_start(local) == datetime(2026, 2, 28, tzinfo=UTC)
    monthly = spec.model_copy(update={"reset_period": "monthly"})
    assert monthly.period_start(local) == datetime(2026, 2, 1, tzinfo=UTC)
    assert spec.model_copy(update={"reset_period": "lifetime"}).period_start(local) is None


@settings(max_examples=60, deadline=None)
@given(st.decimals(min_value=0, max_value=10**9, places=12, allow_nan=False, allow_infinity=False))
def test_money_round_trips_exactly(value: Decimal) -> None:
    text = format(value, "f")
    price = Price.model_validate({"endpoint": "e", "prompt": text, "completion": text})
    dumped = price.model_dump(mode="json", by_alias=True)
    assert dumped["prompt"] == text
    assert Price.model_validate(dumped).prompt == value


def test_an_endpoint_may_name_the_router_default_auto() -> None:
    """`strategy: auto` is what docs/router.md calls the default: it may be written."""
    parsed = parse_resource(endpoint(strategy="auto"))
    assert parsed.spec.strategy == "auto"  # type: ignore[union-attr]
    schema = openapi_schema("ArksEndpoint")
    jsonschema.validate(endpoint(strategy="auto"), schema)
