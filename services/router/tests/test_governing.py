"""Admission and settlement scripts against a real Valkey."""

from __future__ import annotations

import asyncio

import pytest

from arks_common import ledger
from arks_common.events import EndpointGrant, QuotaLimit, RateLimitValue
from arks_common.testing.builders import make_quota_spec
from arks_router import api_errors, governing, limits
from arks_router.estimating import Estimate
from arks_router.settings import RouterSettings


def _settings(url: str, **redis: object) -> RouterSettings:
    return RouterSettings.model_validate({"redis": {"url": url, **redis}})


@pytest.fixture
async def governor_for():
    clients = []

    def make(settings: RouterSettings) -> governing.Governor:
        client = governing.connect(settings)
        clients.append(client)
        return governing.Governor(client, settings)

    yield make
    for client in clients:
        await client.close()


def _plan(rules, estimate=None, quota=None, request_id="req-1"):
    return governing.Plan(
        request_id=request_id,
        namespace="default",
        token_name="tok",
        endpoint="m",
        rules=rules,
        estimate=estimate or Estimate(10, 20),
        quota=quota,
    )


def _rules(settings: RouterSettings, **values: int) -> list[limits.Rule]:
    grant = EndpointGrant(
        endpoint="m",
        rate_limits=[RateLimitValue(type=k, value=v) for k, v in values.items()],  # type: ignore[arg-type]
    )
    return limits.rules_for(grant, settings.governance)


async def test_rpm_admits_exactly_the_limit_under_concurrency(valkey_server, redis, governor_for):
    settings = _settings(valkey_server.url)
    gov = governor_for(settings)
    rules = _rules(settings, rpm=25)

    async def one(i: int) -> api_errors.ApiError | None:
        try:
            await gov.admit(_plan(rules, request_id=f"r{i}"))
        except api_errors.ApiError as exc:
            return exc
        return None

    results = await asyncio.gather(*(one(i) for i in range(100)))
    refused = [r for r in results if r is not None]
    assert len(refused) == 75
    assert {(r.status, r.code) for r in refused} == {(429, "rate_limit_exceeded")}
    assert all(r.retry_after is not None and 0 < r.retry_after <= 60 for r in refused)


async def test_headers_and_token_settlement(valkey_server, redis, governor_for):
    settings = _settings(valkey_server.url)
    gov = governor_for(settings)
    rules = _rules(settings, rpm=10, tpm=1000)
    admission = await gov.admit(_plan(rules, Estimate(100, 200)))
    headers = dict(admission.headers)
    assert headers[b"x-ratelimit-limit-requests"] == b"10"
    assert headers[b"x-ratelimit-remaining-requests"] == b"9"
    assert headers[b"x-ratelimit-limit-tokens"] == b"1000"
    assert headers[b"x-ratelimit-remaining-tokens"] == b"700"
    assert headers[b"x-ratelimit-reset-tokens"].endswith(b"s")
    [charge] = admission.token_charges
    key = charge.key
    assert int(await redis.hget(key, "t")) == 300
    await gov.settle(admission, 42)
    assert int(await redis.hget(key, "t")) == 42
    assert int(await redis.hget(key, str(charge.bucket))) == 42
    # The window now has room for 958 more tokens, not 700.
    second = await gov.admit(_plan(rules, Estimate(900, 58), request_id="req-2"))
    assert dict(second.headers)[b"x-ratelimit-remaining-tokens"] == b"0"
    with pytest.raises(api_errors.ApiError) as denied:
        await gov.admit(_plan(rules, Estimate(1, 0), request_id="req-3"))
    assert denied.value.param == "tpm"


async def test_quota_reservation_follows_the_ledger(valkey_server, redis, governor_for):
    settings = _settings(valkey_server.url)
    gov = governor_for(settings)
    spec = make_quota_spec(
        limits=[QuotaLimit(type="total", value=100), QuotaLimit(type="prompt", value=1000)],
        budget_nanos=10**9,
    )
    plan = governing.quota_plan(spec, "qwen-7b", Estimate(30, 20), "lifetime")
    await gov.admit(_plan([], Estimate(30, 20), quota=plan, request_id="a"))
    resv = await redis.hgetall(ledger.reservation_key("default", spec.name, "a"))
    assert resv[b"period"] == b"lifetime"
    assert int(resv[b"total"]) == 50
    assert int(resv[b"prompt"]) == 30
    assert int(resv[b"response"]) == 0  # no response limit: nothing reserved
    assert int(resv[b"cost"]) == ledger.to_nanos(
        ledger.token_cost(30, spec.prices[0].prompt)
        + ledger.token_cost(20, spec.prices[0].completion)
    )
    assert (
        int(await redis.get(ledger.reserved_key("default", spec.name, "lifetime", "total"))) == 50
    )
    score = await redis.zscore(ledger.reservation_index_key("default", spec.name), "a")
    assert score == int(resv[b"expires"])
    await gov.admit(_plan([], Estimate(30, 20), quota=plan, request_id="b"))
    with pytest.raises(api_errors.ApiError) as exhausted:
        await gov.admit(_plan([], Estimate(30, 20), quota=plan, request_id="c"))
    assert exhausted.value.status == 429
    assert exhausted.value.code == "insufficient_quota"
    assert not await redis.exists(ledger.reservation_key("default", spec.name, "c"))
    assert (
        int(await redis.get(ledger.reserved_key("default", spec.name, "lifetime", "total"))) == 100
    )


async def test_redis_down_fails_closed_or_open(valkey_server, governor_for):
    closed = _settings(valkey_server.url, socket_timeout=0.5)
    opened = _settings(valkey_server.url, socket_timeout=0.5, fail_mode="open")
    valkey_server.stop()
    rules = _rules(closed, rpm=1)
    gov_closed = governor_for(closed)
    with pytest.raises(api_errors.ApiError) as refused:
        await gov_closed.admit(_plan(rules))
    assert refused.value.status == 503
    assert refused.value.code == "governance_unavailable"
    # The breaker now skips Redis entirely.
    assert not gov_closed.available
    gov_open = governor_for(opened)
    admission = await gov_open.admit(_plan(rules))
    assert not admission.charged
    valkey_server.start()


async def test_windows_slide_bucket_by_bucket(valkey_server, redis, governor_for):
    settings = _settings(valkey_server.url)
    gov = governor_for(settings)
    rules = _rules(settings, rpm=10)
    admission = await gov.admit(_plan(rules, request_id="now"))
    key = limits.window_key(
        limits.slot_tag("default", "tok", "m", None), "default", "tok", "m", "rpm"
    )
    current = int(dict(admission.headers)[b"x-ratelimit-remaining-requests"])
    assert current == 9
    bucket = int(await redis.hget(key, "h"))
    # Pretend earlier requests: 6 in the bucket that is about to leave the window, 3
    # in one well inside it. Together with the one just made the window is full.
    oldest = bucket  # the head is the oldest bucket still in the window
    await redis.hset(key, mapping={str(oldest): 6 + 1, str(bucket + 30): 3, "t": 10})
    with pytest.raises(api_errors.ApiError) as full:
        await gov.admit(_plan(rules, request_id="full"))
    # Freeing one request needs the oldest bucket to leave: it leaves within 60 s.
    assert full.value.retry_after is not None
    assert full.value.retry_after <= 60
    # Buckets that left the window are evicted and no longer count.
    await redis.hset(key, mapping={"h": bucket - 100, str(bucket - 100): 50, "t": 60})
    await redis.hdel(key, str(oldest), str(bucket + 30))
    admitted = await gov.admit(_plan(rules, request_id="after"))
    assert dict(admitted.headers)[b"x-ratelimit-remaining-requests"] == b"9"
    assert not await redis.hexists(key, str(bucket - 100))


async def test_a_limit_of_zero_admits_nothing(valkey_server, governor_for):
    settings = _settings(valkey_server.url)
    gov = governor_for(settings)
    for rules in (_rules(settings, rpm=0), _rules(settings, tpm=0)):
        with pytest.raises(api_errors.ApiError) as refused:
            await gov.admit(_plan(rules))
        assert refused.value.status == 429
