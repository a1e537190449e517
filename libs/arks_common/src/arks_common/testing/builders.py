"""Builders for messages, with defaults that are valid and overridable per field."""

from __future__ import annotations

import hashlib
import itertools
import uuid
from decimal import Decimal
from typing import Any

from arks_common import events

_counter = itertools.count(1)


def request_id() -> str:
    return f"req-{uuid.uuid4().hex}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def make_usage_event(**overrides: Any) -> events.UsageRecorded:
    values: dict[str, Any] = {
        "id": request_id(),
        "namespace": "default",
        "token_name": "example-token",
        "endpoint": "qwen-7b",
        "backend": "app-qwen",
        "model": "qwen-7b",
        "quota": "basic-quota",
        "quota_period": "lifetime",
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "cached_tokens": 0,
        "reserved_tokens": 40,
        "duration_ms": 12.5,
    }
    values.update(overrides)
    return events.UsageRecorded(**values)


def make_route_table(**overrides: Any) -> events.RouteTable:
    values: dict[str, Any] = {
        "namespace": "default",
        "endpoint": "qwen-7b",
        "backends": [
            events.RouteBackend(name="app-qwen", url="http://127.0.0.1:9", application="app-qwen")
        ],
    }
    values.update(overrides)
    return events.RouteTable(**values)


def make_token_grant(**overrides: Any) -> events.TokenGrant:
    values: dict[str, Any] = {
        "namespace": "default",
        "token_name": "example-token",
        "grants": [
            events.EndpointGrant(
                endpoint="qwen-7b",
                rate_limits=[
                    events.RateLimitValue(type="rpm", value=5),
                    events.RateLimitValue(type="tpm", value=40000),
                    events.RateLimitValue(type="rpd", value=100),
                    events.RateLimitValue(type="tpd", value=1000000),
                ],
                quota="basic-quota",
            )
        ],
    }
    values.update(overrides)
    return events.TokenGrant(**values)


def make_quota_spec(**overrides: Any) -> events.QuotaSpec:
    values: dict[str, Any] = {
        "namespace": "default",
        "name": "basic-quota",
        "limits": [
            events.QuotaLimit(type="prompt", value=100000),
            events.QuotaLimit(type="response", value=500000),
            events.QuotaLimit(type="total", value=600000),
        ],
        "prices": [
            events.EndpointPrice(
                endpoint="qwen-7b",
                prompt=Decimal("0.50"),
                cached_prompt=Decimal("0.25"),
                completion=Decimal("1.50"),
            )
        ],
        "price_version": f"test-{next(_counter)}",
    }
    values.update(overrides)
    return events.QuotaSpec(**values)


# --------------------------------------------------------------------------- resources
# Objects are JSON dicts, the form the store, the CLI and the Kubernetes API take; each
# builder validates its result, so a test can never start from an invalid object.


def _resource(kind: str, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    from arks_common import resources

    obj = {
        "apiVersion": "arks.ai/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    return resources.dump_resource(resources.parse_resource(obj))


def make_model(name: str = "qwen-7b", namespace: str = "default", **spec: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"model": "Qwen/Qwen2.5-7B-Instruct-1M"}
    values.update(spec)
    return _resource("ArksModel", name, namespace, values)


def make_application(
    name: str = "app-qwen", namespace: str = "default", **spec: Any
) -> dict[str, Any]:
    values: dict[str, Any] = {"replicas": 1, "runtime": "sim", "model": {"name": "qwen-7b"}}
    values.update(spec)
    return _resource("ArksApplication", name, namespace, values)


def make_endpoint(name: str = "qwen-7b", namespace: str = "default", **spec: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"defaultWeight": 1}
    values.update(spec)
    return _resource("ArksEndpoint", name, namespace, values)


def make_token(
    name: str = "example-token",
    namespace: str = "default",
    token: str = "sk-test123456",
    **spec: Any,
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "token": token,
        "qos": [
            {
                "arksEndpoint": {"name": "qwen-7b"},
                "rateLimits": [{"type": "rpm", "value": 60}],
                "quota": {"name": "basic-quota"},
            }
        ],
    }
    values.update(spec)
    return _resource("ArksToken", name, namespace, values)


def make_quota(
    name: str = "basic-quota", namespace: str = "default", **spec: Any
) -> dict[str, Any]:
    values: dict[str, Any] = {"quotas": [{"type": "total", "value": 600000}]}
    values.update(spec)
    return _resource("ArksQuota", name, namespace, values)
