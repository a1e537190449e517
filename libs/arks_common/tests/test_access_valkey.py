"""The Valkey ACL users of `arks_common.access` against a real Valkey (`ACL DRYRUN`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from arks_common import access, ledger, valkey
from arks_common.access import Credentials
from arks_common.embedded import ValkeyServer
from arks_common.errors import PermanentError
from arks_common.settings import RedisSettings

QUOTA_KEY = ledger.used_key("ns", "q", "lifetime", "total")


@pytest.fixture
async def admin(
    secured_valkey_server: ValkeyServer, credentials: Credentials
) -> AsyncIterator[aioredis.Redis]:
    client = valkey.client(credentials.redis_settings(access.ADMIN, secured_valkey_server.url))
    try:
        yield client
    finally:
        await client.aclose()


async def allowed(admin: aioredis.Redis, user: str, *command: str) -> bool:
    reply = await admin.execute_command("ACL", "DRYRUN", user, *command)
    return bool(reply in (b"OK", "OK"))


@pytest.mark.parametrize(
    "command",
    [
        ("PING",),
        ("GET", QUOTA_KEY),
        ("SET", "arks:accountant:restore-lock", "x", "NX", "PX", "1000"),
        ("EVALSHA", "0" * 40, "1", QUOTA_KEY),
        ("SCAN", "0", "MATCH", "arks:acct:*"),
        ("HGETALL", ledger.usage_key("ns", "namespace")),
        ("SMEMBERS", ledger.USAGE_NAMESPACES_KEY),
        ("MGET", QUOTA_KEY),
        ("DEL", ledger.applied_key("ns", "q", "r")),
    ],
)
async def test_the_accountant_may_run_what_it_runs(
    admin: aioredis.Redis, command: tuple[str, ...]
) -> None:
    assert await allowed(admin, access.ACCOUNTANT, *command)


@pytest.mark.parametrize(
    ("user", "command"),
    [
        (access.ACCOUNTANT, ("FLUSHALL",)),
        (access.ACCOUNTANT, ("KEYS", "*")),
        (access.ACCOUNTANT, ("CONFIG", "GET", "*")),
        (access.ACCOUNTANT, ("GET", "not-arks")),
        (access.ROUTER, ("GET", ledger.usage_key("ns", "namespace"))),
        (access.ROUTER, ("SET", ledger.applied_key("ns", "q", "r"), "1")),
        (access.ROUTER, ("FLUSHDB",)),
        (access.ROUTER, ("SCAN", "0")),
    ],
)
async def test_what_each_user_must_not_do_is_refused(
    admin: aioredis.Redis, user: str, command: tuple[str, ...]
) -> None:
    assert not await allowed(admin, user, *command)


async def test_an_unauthenticated_client_can_do_nothing(
    secured_valkey_server: ValkeyServer,
) -> None:
    client = aioredis.Redis.from_url(secured_valkey_server.url)
    try:
        with pytest.raises(redis.exceptions.AuthenticationError):
            await client.ping()
        with pytest.raises(redis.exceptions.AuthenticationError):
            await client.set("x", "1")
    finally:
        await client.aclose()


async def test_transactions_survive_a_crash_under_the_acl(
    secured_valkey_server: ValkeyServer, credentials: Credentials
) -> None:
    # Valkey replays its append-only file as `default`, re-checking ACLs at each EXEC:
    # the ACL must not make a restart drop the accountant's MULTI/EXEC writes.
    settings = credentials.redis_settings(access.ACCOUNTANT, secured_valkey_server.url)
    client = valkey.client(settings)
    try:
        async with client.pipeline(transaction=True) as pipe:
            pipe.incrby(QUOTA_KEY, 7)
            pipe.hincrby(ledger.KEY_ROOT + "acct:{ns/q}", "a:total", 7)
            await pipe.execute()
        await client.incrby(QUOTA_KEY, 1)
    finally:
        await client.aclose()
    secured_valkey_server.kill()
    secured_valkey_server.start()
    client = valkey.client(settings)
    try:
        assert await client.get(QUOTA_KEY) == b"8"
        assert await client.hget(ledger.KEY_ROOT + "acct:{ns/q}", "a:total") == b"7"
    finally:
        await client.aclose()


async def test_refused_credentials_are_permanent_and_name_the_settings(
    secured_valkey_server: ValkeyServer,
) -> None:
    settings = RedisSettings(
        url=secured_valkey_server.url, username=access.ACCOUNTANT, password="wrong-pw-31"
    )
    client = valkey.client(settings)
    try:
        with pytest.raises(PermanentError) as raised:
            await valkey.verify(client, settings)
    finally:
        await client.aclose()
    assert "ARKS_REDIS__USERNAME / ARKS_REDIS__PASSWORD" in raised.value.message
    assert "wrong-pw-31" not in raised.value.message
