"""Finding and opening the local stack: NATS (resources, events) and Redis (usage).

Each URL comes from, in order: the command-line flag, the service environment variable
(`ARKS_NATS__URL`, `ARKS_REDIS__URL`, `ARKS_ROUTER_URL`), the `.arks/state.json` of a
running `arks up`, else the conventional local default. Credentials come from
`ARKS_NATS__USER` / `ARKS_NATS__PASSWORD` and `ARKS_REDIS__USERNAME` /
`ARKS_REDIS__PASSWORD` when set, else the admin user of the running stack's
`.arks/credentials.json` (`arks_cli.credentials`), else none. A broker that does not
answer becomes a `NotRunningError` in a few seconds rather than after the services' long
connect deadline, and so does one that stops answering in the middle of a command. Its
message says what to do: when the broker belongs to a running `arks up`, that it is being
restarted and where its log is (`NATS at nats://127.0.0.1:4222 is not answering (arks up
restarts it; see .arks/logs/nats.log)`); otherwise that the stack may not be running. One
that refuses the credentials is a CliError naming the settings to fix.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats.errors
import nats.js.errors
import redis.asyncio as aioredis
import redis.exceptions
from pydantic import SecretStr

from arks_cli import credentials, processes
from arks_cli.errors import CliError, NotRunningError
from arks_cli.service_catalog import StackPaths
from arks_cli.stack_state import ProcessRecord, find_state_dir, read_state
from arks_common import access, messaging, subjects, valkey
from arks_common.errors import PermanentError, RetryableError
from arks_common.messaging import Bus
from arks_common.settings import NatsSettings, RedisSettings
from arks_common.store import ResourceStore

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
NATS_URL_ENV = "ARKS_NATS__URL"
REDIS_URL_ENV = "ARKS_REDIS__URL"
ROUTER_URL_ENV = "ARKS_ROUTER_URL"
CONNECT_DEADLINE = 3.0
HINT = "is `make run` (or `arks up`) running?"


@dataclass(frozen=True)
class Targets:
    """Where the stack's brokers are, and who the CLI logs in as."""

    nats_url: str
    redis_url: str
    router_url: str | None
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    redis_username: str | None = None
    redis_password: SecretStr | None = None

    @property
    def nats(self) -> NatsSettings:
        return NatsSettings(
            url=self.nats_url,
            user=self.nats_user,
            password=self.nats_password,
            inbox_prefix=access.inbox_prefix(self.nats_user) if self.nats_user else "_INBOX",
            connect_timeout=1.0,
            connect_deadline=CONNECT_DEADLINE,
            request_timeout=5.0,
        )

    @property
    def redis(self) -> RedisSettings:
        return RedisSettings(
            url=self.redis_url,
            username=self.redis_username,
            password=self.redis_password,
            socket_timeout=3.0,
        )


def _secret(name: str) -> SecretStr | None:
    value = os.environ.get(name)
    return SecretStr(value) if value else None


def resolve_targets(
    nats_url: str | None = None, redis_url: str | None = None, router_url: str | None = None
) -> Targets:
    """Flags first, then the environment, then `.arks/state.json`, then the defaults."""
    directory = find_state_dir()
    state = read_state(directory) if directory is not None else None
    stack = credentials.read(directory) if directory is not None else None
    nats_user = os.environ.get(credentials.NATS_USER_ENV)
    nats_password = _secret(credentials.NATS_PASSWORD_ENV)
    if nats_user is None and stack is not None:
        nats_user, nats_password = access.ADMIN, SecretStr(stack.nats[access.ADMIN])
    redis_username = os.environ.get(credentials.REDIS_USERNAME_ENV)
    redis_password = _secret(credentials.REDIS_PASSWORD_ENV)
    if redis_password is None and stack is not None:
        redis_username, redis_password = access.ADMIN, SecretStr(stack.valkey[access.ADMIN])
    return Targets(
        nats_user=nats_user,
        nats_password=nats_password,
        redis_username=redis_username,
        redis_password=redis_password,
        nats_url=nats_url
        or os.environ.get(NATS_URL_ENV)
        or (state.nats_url if state else DEFAULT_NATS_URL),
        redis_url=redis_url
        or os.environ.get(REDIS_URL_ENV)
        or (state.redis_url if state else DEFAULT_REDIS_URL),
        router_url=router_url
        or os.environ.get(ROUTER_URL_ENV)
        or (state.router_url if state else None),
    )


BROKERS: dict[str, tuple[str, str]] = {
    "nats": ("NATS", "NATS"),
    "valkey": ("Valkey", "Redis/Valkey"),
}
"""Each broker's log name -> how to call it under `arks up`, and elsewhere."""


def not_answering(broker: str, url: str) -> str:
    """The line for a broker (`nats`, `valkey`) at `url` that does not answer: being
    restarted, when a live `arks up` runs it (and where its log is); else probably not
    started at all."""
    ours, anyone = BROKERS[broker]
    directory = find_state_dir()
    state = read_state(directory) if directory is not None else None
    if state is not None and url in (state.nats_url, state.redis_url):
        supervisor = ProcessRecord(
            name="arks up", pid=state.supervisor_pid, create_time=state.supervisor_create_time
        )
        if processes.alive(supervisor):
            log = _shown(StackPaths(Path(state.dir)).log(broker))
            return f"{ours} at {url} is not answering (arks up restarts it; see {log})"
    return f"cannot reach {anyone} at {url}: {HINT}"


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


NATS_FAILURES = (RetryableError, nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError)


@contextlib.asynccontextmanager
async def open_bus(target: Targets | NatsSettings, *, name: str = "arks-cli") -> AsyncIterator[Bus]:
    """A connected Bus, or NotRunningError after a few seconds."""
    settings = target.nats if isinstance(target, Targets) else target
    url = settings.url
    try:
        bus = await Bus.connect(settings, name=name)
    except RetryableError as exc:
        raise NotRunningError(not_answering("nats", url)) from exc
    except PermanentError as exc:
        raise CliError(exc.message) from exc
    try:
        yield bus
    except NATS_FAILURES as exc:
        if not bus.connected:
            raise NotRunningError(not_answering("nats", url)) from exc
        raise CliError(f"NATS at {url} did not complete the request ({exc!r}); try again") from exc
    finally:
        await bus.close(drain_timeout=2.0)


@contextlib.asynccontextmanager
async def open_store(target: Targets) -> AsyncIterator[ResourceStore]:
    """The resource store on the stack's NATS, its bucket created if missing."""
    url = target.nats_url
    async with open_bus(target) as bus:
        try:
            config = next(b for b in messaging.BUCKETS if b.bucket == subjects.RESOURCES_BUCKET)
            await bus.ensure_bucket(config)
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            raise NotRunningError(
                f"NATS at {url} answers but JetStream does not ({exc}): {HINT}"
            ) from exc
        yield ResourceStore(bus)


@contextlib.asynccontextmanager
async def open_redis(settings: RedisSettings) -> AsyncIterator[aioredis.Redis]:
    """A Redis client that answered PING, or NotRunningError (CliError: refused)."""
    url = settings.url
    client = valkey.client(settings, socket_connect_timeout=2.0)
    try:
        try:
            await client.ping()
        except (redis.exceptions.RedisError, OSError) as exc:
            if valkey.is_refusal(exc):
                raise CliError(valkey.refused_message(settings, str(exc))) from exc
            raise NotRunningError(not_answering("valkey", url)) from exc
        try:
            yield client
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise NotRunningError(not_answering("valkey", url)) from exc
    finally:
        await client.aclose()
