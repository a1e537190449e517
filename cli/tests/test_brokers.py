"""A supervised broker (real nats-server / Valkey) comes back after `kill -9`, in place.

Same port, same data (a Valkey counter and a JetStream KV value written before the kill
are there after), a new pid reported through `on_change`, the restart on the console and
in the broker's log; a restart that cannot bind its port is retried until it can; and a
stop leaves no broker process behind.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import nats
import psutil
import redis.asyncio as aioredis

from arks_cli.brokers import Broker, Server
from arks_cli.console import Console
from arks_common.embedded import NatsServer, ValkeyServer
from cli.tests.conftest import wait_until


class Seen:
    """What the supervisor reported: the console and each pid `on_change` saw."""

    def __init__(self) -> None:
        self.out = io.StringIO()
        self.err = io.StringIO()
        self.pids: list[int | None] = []

    def console(self) -> Console:
        return Console(self.out, self.err)


@asynccontextmanager
async def _supervised(name: str, server: Server, seen: Seen) -> AsyncIterator[Broker]:
    """`server` started (as `arks up` starts it), then under supervision until the end."""
    await asyncio.to_thread(server.start)
    assert server.log_file is not None
    broker = Broker(name, server, server.log_file, seen.console())
    broker.on_change = lambda: seen.pids.append(broker.pid)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(broker.run())
        try:
            yield broker
        finally:
            await broker.stop(5.0)


def _killed_and_back(broker: Broker, first: int) -> Callable[[], bool]:
    """True once the restart finished: a new process, serving (`starts` counts a start
    only once `server.start()` returned, i.e. the broker answers)."""

    def check() -> bool:
        pid = broker.pid
        return broker.starts == 2 and pid is not None and pid != first and broker.exits == 1

    return check


async def test_a_killed_valkey_comes_back_on_its_port_with_its_counters(tmp_path: Path) -> None:
    server = ValkeyServer(tmp_path / "valkey", log_file=tmp_path / "logs" / "valkey.log")
    seen = Seen()
    async with _supervised("valkey-server", server, seen) as broker:
        before = aioredis.Redis.from_url(server.url)
        try:
            await before.incrby("used:total", 1234)
        finally:
            await before.aclose()
        first = broker.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await wait_until(_killed_and_back(broker, first))
        # Ready means answering, after the append-only file was replayed.
        after = aioredis.Redis.from_url(server.url)
        try:
            assert int(await after.get("used:total") or 0) == 1234
        finally:
            await after.aclose()
        assert seen.pids[0] == first
        assert None in seen.pids  # the dead pid left the state file before the new one came
        assert seen.pids[-1] == broker.pid
        last = broker.pid
    assert last is not None
    assert not psutil.pid_exists(last) or psutil.Process(last).status() == psutil.STATUS_ZOMBIE
    errors = seen.err.getvalue()
    assert "valkey-server was killed by SIGKILL" in errors
    assert f"restarting in 1s (log: {tmp_path / 'logs' / 'valkey.log'})" in errors
    assert f"valkey-server restarted (pid {last})" in seen.out.getvalue()
    assert "--- arks up: restarting valkey-server" in (tmp_path / "logs" / "valkey.log").read_text()


async def test_a_killed_nats_comes_back_with_its_jetstream(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats", log_file=tmp_path / "logs" / "nats.log")
    seen = Seen()
    async with _supervised("nats-server", server, seen) as broker:
        nc = await nats.connect(server.url)
        try:
            kv = await nc.jetstream().create_key_value(bucket="survives")
            await kv.put("key", b"value")
            first = broker.pid
            assert first is not None
            os.kill(first, signal.SIGKILL)
            await wait_until(_killed_and_back(broker, first))
            async with asyncio.timeout(20):
                while True:
                    try:
                        entry = await (await nc.jetstream().key_value("survives")).get("key")
                        break
                    except (nats.errors.Error, nats.js.errors.Error):
                        await asyncio.sleep(0.1)
            assert entry.value == b"value"
        finally:
            await nc.close()
    assert "nats-server was killed by SIGKILL" in seen.err.getvalue()


async def test_a_restart_that_cannot_bind_its_port_is_retried_until_it_can(
    tmp_path: Path,
) -> None:
    server = ValkeyServer(tmp_path / "valkey", log_file=tmp_path / "logs" / "valkey.log")
    seen = Seen()
    async with _supervised("valkey-server", server, seen) as broker:
        first = broker.pid
        assert first is not None
        squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            os.kill(first, signal.SIGKILL)
            await wait_until(lambda: broker.pid is None)
            # Bound without SO_REUSEADDR (and not listening): Valkey cannot bind it.
            squatter.bind((server.host, server.port))
            # The first retry comes 1 s after the kill, the next 2 s after that one.
            await wait_until(lambda: "retrying in 2s" in seen.err.getvalue())
            failed = [p for p in psutil.Process().children() if p.name() == "valkey-server"]
            assert failed == []  # nothing of the failed start is left running
        finally:
            squatter.close()
        await wait_until(lambda: broker.pid is not None)
        client = aioredis.Redis.from_url(server.url)
        try:
            assert await client.ping()
        finally:
            await client.aclose()
    assert "valkey-server could not start" in seen.err.getvalue()
