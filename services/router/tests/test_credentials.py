"""The router as its own NATS and Valkey user: what it needs works, wrong credentials stop it."""

from __future__ import annotations

import inspect
import re

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from arks_common import access, ledger
from arks_common.access import Credentials
from arks_common.embedded import ValkeyServer
from arks_common.errors import PermanentError
from arks_common.events import EndpointGrant, RateLimitValue
from arks_common.testing.builders import make_quota_spec
from arks_router import governing, leasing, limits, pipelining, scripts
from arks_router.estimating import Estimate
from arks_router.settings import RouterSettings


def test_every_command_of_the_router_scripts_is_in_its_acl() -> None:
    sources = inspect.getsource(scripts) + inspect.getsource(leasing)
    called = {c.lower() for c in re.findall(r"redis\.p?call\('([A-Za-z]+)'", sources)}
    assert called
    assert called <= set(access.ROUTER_COMMANDS)


async def test_router_user_admits_reserves_and_settles(
    secured_valkey_server: ValkeyServer, credentials: Credentials
) -> None:
    redis_settings = credentials.redis_settings(access.ROUTER, secured_valkey_server.url)
    settings = RouterSettings(redis=redis_settings.model_dump())  # type: ignore[arg-type]
    client = governing.connect(settings)
    try:
        await client.verify(settings.redis)
        gov = governing.Governor(client, settings, router_id="router-a")
        grant = EndpointGrant(
            endpoint="m", rate_limits=[RateLimitValue(type="rpm", value=5)], quota="q"
        )
        rules = limits.rules_for(grant, settings.governance)
        spec = make_quota_spec(namespace="default", name="q")
        plan = governing.Plan(
            request_id="r1",
            namespace="default",
            token_name="tok",
            endpoint="m",
            rules=rules,
            estimate=Estimate(10, 20),
            quota=governing.quota_plan(spec, "m", Estimate(10, 20), ledger.LIFETIME),
        )
        admission = await gov.admit(plan)
        assert admission.charged
        await gov.settle(admission, 25)
        lease = leasing.Lease(client, router_id="router-a")
        assert await lease.refresh()
        await lease.release()
    finally:
        await client.close()
    admin = aioredis.Redis.from_url(
        secured_valkey_server.url,
        username=access.ADMIN,
        password=credentials.valkey[access.ADMIN],
    )
    try:
        assert await admin.exists(ledger.reservation_key("default", "q", "r1"))
        assert await admin.smembers(ledger.reservation_routers_key("default", "q")) == {b"router-a"}
    finally:
        await admin.aclose()


async def test_router_user_cannot_reach_other_keys_or_admin_commands(
    secured_valkey_server: ValkeyServer, credentials: Credentials
) -> None:
    router = aioredis.Redis.from_url(
        secured_valkey_server.url,
        username=access.ROUTER,
        password=credentials.valkey[access.ROUTER],
    )
    try:
        for attempt in (
            router.get(ledger.usage_key("default", "namespace")),
            router.set(ledger.applied_key("default", "q", "r1"), 1),
            router.flushall(),
            router.keys("*"),
            router.config_get("*"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                await attempt
    finally:
        await router.aclose()
    anonymous = aioredis.Redis.from_url(secured_valkey_server.url)
    try:
        with pytest.raises(redis.exceptions.AuthenticationError):
            await anonymous.ping()
    finally:
        await anonymous.aclose()


async def test_a_wrong_valkey_password_is_permanent_and_names_the_settings(
    secured_valkey_server: ValkeyServer,
) -> None:
    settings = RouterSettings(
        redis={"url": secured_valkey_server.url, "username": "router", "password": "wrong"}  # type: ignore[arg-type]
    )
    client = governing.connect(settings)
    try:
        with pytest.raises(PermanentError) as raised:
            await client.verify(settings.redis)
    finally:
        await client.close()
    assert "refused user 'router'" in raised.value.message
    assert "ARKS_REDIS__USERNAME / ARKS_REDIS__PASSWORD" in raised.value.message
    assert "wrong" not in raised.value.message.replace("WRONGPASS", "")


async def test_an_unreachable_valkey_does_not_stop_the_router_starting() -> None:
    client = pipelining.PipelinedRedis("redis://127.0.0.1:1/0", timeout=1.0)
    try:
        await client.verify(RouterSettings().redis)  # logged, not raised
    finally:
        await client.close()
