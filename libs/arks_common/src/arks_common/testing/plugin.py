"""pytest fixtures: real nats-server and Valkey per test (see `arks_common.testing`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats.js.errors
import pytest
import redis.asyncio as aioredis

from arks_common import access, messaging
from arks_common.embedded import NatsServer, ValkeyServer
from arks_common.settings import NatsSettings
from arks_common.testing import reference


class ExternalServer:
    """A server the developer runs: usable, but not restartable by tests."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _refuse(self) -> None:
        pytest.fail(f"this test restarts its broker, which {self.url} (from the env) cannot do")

    start = stop = kill = restart = _refuse


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that read the shared reference material are conformance tests."""
    for item in items:
        if reference.FIXTURE in getattr(item, "fixturenames", ()):
            item.add_marker(reference.MARKER)


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    """The shared reference material (`make conformance`); fails when it is missing."""
    return reference.shared_path()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer | ExternalServer]:
    external = os.environ.get("ARKS_TEST_NATS_URL")
    if external:
        yield ExternalServer(external)
        return
    server = NatsServer(tmp_path / "nats", log_file=tmp_path / "nats.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def valkey_server(tmp_path: Path) -> Iterator[ValkeyServer | ExternalServer]:
    external = os.environ.get("ARKS_TEST_REDIS_URL")
    if external:
        yield ExternalServer(external)
        return
    server = ValkeyServer(tmp_path / "valkey", log_file=tmp_path / "valkey.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def credentials() -> access.Credentials:
    """A password for every Arks NATS and Valkey user (one set per test session)."""
    return access.Credentials.generate()


@pytest.fixture(scope="session")
def _nats_authorization(credentials: access.Credentials) -> str:
    return credentials.nats_authorization()  # bcrypt once per session, not per test


@pytest.fixture
def secured_nats_server(tmp_path: Path, _nats_authorization: str) -> Iterator[NatsServer]:
    """nats-server with every Arks user and its permissions (`arks_common.access`)."""
    server = NatsServer(
        tmp_path / "nats-secured",
        log_file=tmp_path / "nats-secured.log",
        authorization=_nats_authorization,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def secured_valkey_server(
    tmp_path: Path, credentials: access.Credentials
) -> Iterator[ValkeyServer]:
    """Valkey with the Arks ACL users and `default` locked."""
    server = ValkeyServer(
        tmp_path / "valkey-secured",
        log_file=tmp_path / "valkey-secured.log",
        auth=credentials.valkey_auth(),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def admin_bus(
    secured_nats_server: NatsServer, credentials: access.Credentials
) -> AsyncIterator[messaging.Bus]:
    """A Bus on `secured_nats_server` logged in as the admin, every stream and bucket made."""
    settings = credentials.nats_settings(access.ADMIN, secured_nats_server.url, connect_deadline=10)
    connected = await messaging.Bus.connect(settings, name="arks-test-admin")
    await connected.ensure_topology()
    try:
        yield connected
    finally:
        await connected.close()


async def _wipe_external_nats(bus: messaging.Bus) -> None:
    for config in messaging.STREAMS:
        assert config.name is not None
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await bus.js.delete_stream(config.name)
    for bucket in messaging.BUCKETS:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await bus.js.delete_key_value(bucket.bucket)


@pytest.fixture
async def bus(nats_server: NatsServer | ExternalServer) -> AsyncIterator[messaging.Bus]:
    settings = NatsSettings(url=nats_server.url, connect_deadline=10)
    connected = await messaging.Bus.connect(settings, name="arks-test")
    if isinstance(nats_server, ExternalServer):
        await _wipe_external_nats(connected)
    await connected.ensure_topology()
    try:
        yield connected
    finally:
        await connected.close()


@pytest.fixture
async def redis(valkey_server: ValkeyServer | ExternalServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(valkey_server.url, decode_responses=False)
    if isinstance(valkey_server, ExternalServer):
        await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks behind: they would outlive their owner."""
    before = set(asyncio.all_tasks())
    yield
    current = asyncio.current_task()
    leaked: list[asyncio.Task[object]] = []
    for _ in range(50):  # let tasks that are already finishing finish
        leaked = [t for t in asyncio.all_tasks() if t not in before and t is not current]
        leaked = [t for t in leaked if not t.done()]
        if not leaked:
            return
        await asyncio.sleep(0.02)
    names = ", ".join(
        sorted(f"{t.get_name()} ({getattr(t.get_coro(), '__qualname__', '?')})" for t in leaked)
    )
    for task in leaked:
        task.cancel()
    pytest.fail(f"test leaked running asyncio tasks: {names}")
