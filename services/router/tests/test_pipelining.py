"""The router's hand-written Valkey client (`arks_router.pipelining`) against real Valkey,
held to the contract of the maintained client it replaces on the hot path: the same
replies as redis-py for the same commands and scripts, in order under concurrency, a
script loaded again after SCRIPT FLUSH, one command's error reply failing that command
only, a killed connection failing what waited on it and the next command reconnecting,
and credentials refused as `CredentialsRefused`."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from arks_common import access
from arks_router.pipelining import CredentialsRefused, PipelinedRedis, ReplyError, Script

ADD = Script(
    "local v = redis.call('INCRBY', KEYS[1], ARGV[1]) "
    "redis.call('RPUSH', KEYS[2], ARGV[2]) "
    "return {v, redis.call('LLEN', KEYS[2]), ARGV[2], false}"
)


@pytest.fixture
async def client(valkey_server: Any) -> Any:
    pipelined = PipelinedRedis(valkey_server.url, timeout=5)
    try:
        yield pipelined
    finally:
        await pipelined.close()


async def test_replies_are_those_of_redis_py(client: PipelinedRedis, redis: aioredis.Redis) -> None:
    assert await client.execute("SET", "k", "v") == b"OK"
    assert await client.execute("GET", "k") == await redis.get("k") == b"v"
    assert await client.execute("GET", "missing") is None
    assert await client.execute("INCRBY", "n", 5) == 5
    assert await client.execute("HSET", "h", "a", 1, "b", 2) == 2
    assert await client.execute("HGETALL", "h") == [b"a", b"1", b"b", b"2"]
    ours = await client.evalsha(ADD, ["count", "log"], [3, "x"])
    theirs = await redis.evalsha(ADD.sha, 2, "count", "log", 4, "y")
    assert ours == [3, 1, b"x", None]
    assert theirs == [7, 2, b"y", None]
    assert await client.execute("LRANGE", "log", 0, -1) == [b"x", b"y"]
    assert await client.execute("SET", "bin", b"\x00\r\n\xff") == b"OK"
    assert await redis.get("bin") == b"\x00\r\n\xff"


async def test_concurrent_commands_get_their_own_replies_in_order(client: PipelinedRedis) -> None:
    replies = await asyncio.gather(*(client.evalsha(ADD, ["c", "l"], [1, i]) for i in range(300)))
    assert sorted(r[0] for r in replies) == list(range(1, 301))  # type: ignore[index]
    # Each reply is the one of its own command: the value it pushed comes back.
    assert [r[2] for r in replies] == [str(i).encode() for i in range(300)]  # type: ignore[index]
    assert await client.execute("LLEN", "l") == 300


async def test_a_flushed_script_is_loaded_again(client: PipelinedRedis) -> None:
    assert (await client.evalsha(ADD, ["a", "b"], [1, "z"]))[0] == 1  # type: ignore[index]
    assert await client.execute("SCRIPT", "FLUSH") == b"OK"
    assert (await client.evalsha(ADD, ["a", "b"], [1, "z"]))[0] == 2  # type: ignore[index]


async def test_an_error_reply_fails_its_command_only(client: PipelinedRedis) -> None:
    await client.execute("SET", "text", "abc")
    good = asyncio.ensure_future(client.execute("INCR", "number"))
    with pytest.raises(ReplyError, match="not an integer"):
        await client.execute("INCR", "text")
    assert await good == 1
    assert await client.execute("GET", "text") == b"abc"


async def test_a_killed_connection_fails_its_waiters_and_the_next_command_reconnects(
    client: PipelinedRedis, redis: aioredis.Redis
) -> None:
    assert await client.execute("CLIENT", "SETNAME", "pipelined") == b"OK"
    blocked = asyncio.ensure_future(client.execute("BLPOP", "never", 3))
    await asyncio.sleep(0.2)  # BLPOP waits on the server
    clients = (await redis.client_list()) or []
    (ours,) = [c for c in clients if c.get("name") == "pipelined"]
    await redis.client_kill_filter(_id=ours["id"])
    with pytest.raises(ConnectionError):
        await blocked
    assert await client.execute("PING") == b"PONG"  # a new connection


async def test_a_reply_slower_than_the_timeout_fails_and_the_client_recovers(
    valkey_server: Any,
) -> None:
    client = PipelinedRedis(valkey_server.url, timeout=0.3)
    try:
        with pytest.raises(TimeoutError):
            await client.execute("BLPOP", "never", 2)
        assert await client.execute("PING") == b"PONG"
    finally:
        await client.close()


async def test_refused_credentials_are_credentials_refused(
    secured_valkey_server: Any, credentials: access.Credentials
) -> None:
    wrong = PipelinedRedis(
        secured_valkey_server.url, timeout=5, username=access.ROUTER, password="wrong"
    )
    try:
        with pytest.raises(CredentialsRefused):
            await wrong.execute("PING")
    finally:
        await wrong.close()
    password = credentials.valkey[access.ROUTER]
    right = PipelinedRedis(
        secured_valkey_server.url, timeout=5, username=access.ROUTER, password=password
    )
    try:
        assert await right.execute("PING") == b"PONG"
    finally:
        await right.close()
