"""Fixtures of the router's tests: real engine simulators, real routers, real brokers.

- `sims`: starts `arks-engine-sim` subprocesses (`await sims.start(name, **env)` ->
  base URL), time-scaled so tests stay fast; stopped by PID at the end.
- `routers`: `await routers.start(**overrides)` runs the router in-process on a real
  uvicorn socket (port 0); `await routers.spawn(**env)` runs the `arks-router`
  console script as a subprocess (for multi-process and restart tests).
- `state`: writes route tables, token grants and quotas into the KV buckets the
  router watches, as the reconciler would.
- `usage_events(bus)`: every UsageRecorded in the ARKS_USAGE stream, in order.
- `accountants`: `await accountants.spawn()` runs the `arks-accountant` console script
  (settles usage, releases reservations) as a subprocess; stopped at the end.
- `raw_http(...)`: one HTTP/1.1 request written byte for byte on a socket (no client
  library normalises its path), and `taps`: TCP relays in front of engines that record
  every request line they pass on, the proof of what reached an engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats.js.errors
import openai
import pytest

from arks_common import subjects
from arks_common.embedded import free_port
from arks_common.events import (
    EndpointGrant,
    QuotaSpec,
    RateLimitValue,
    RouteBackend,
    RouteTable,
    TokenGrant,
    UsageRecorded,
)
from arks_common.messaging import Bus
from arks_common.runtime import Service, run_until_stopped
from arks_router.app import lifespan
from arks_router.settings import RouterSettings

BIN = Path(sys.executable).parent
SIM_SCRIPT = str(BIN / "arks-engine-sim")
ROUTER_SCRIPT = str(BIN / "arks-router")
ACCOUNTANT_SCRIPT = str(BIN / "arks-accountant")
TIME_SCALE = "50"


async def wait_http(url: str, within: float = 20.0, proc: Any = None) -> None:
    deadline = asyncio.get_running_loop().time() + within
    async with httpx.AsyncClient(timeout=1.0) as client:
        while True:
            if proc is not None and proc.returncode is not None:
                raise RuntimeError(f"process for {url} exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{url} did not become ready")
            await asyncio.sleep(0.05)


async def stop_process(proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


# ----------------------------------------------------------------------------- sims


@dataclass
class Sims:
    workdir: Path
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)

    async def start(self, name: str = "m", **env: str) -> str:
        port = free_port()
        log = (self.workdir / f"sim-{port}.log").open("ab")
        sim_env = {
            "ARKS_SIM_TIME_SCALE": TIME_SCALE,
            **{f"ARKS_SIM_{k.upper()}": v for k, v in env.items()},
        }
        proc = await asyncio.create_subprocess_exec(
            SIM_SCRIPT,
            "--model",
            name,
            "--served-model-name",
            name,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--uvicorn-log-level",
            "warning",
            stdout=log,
            stderr=log,
            env={**os.environ, **sim_env},
        )
        log.close()
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        await wait_http(url + "/health", proc=proc)
        return url

    async def stop_all(self) -> None:
        for proc in self.procs:
            await stop_process(proc)


@pytest.fixture
async def sims(tmp_path: Path) -> AsyncIterator[Sims]:
    running = Sims(tmp_path)
    try:
        yield running
    finally:
        await running.stop_all()


# ----------------------------------------------------------------------------- routers


@dataclass
class RouterHandle:
    url: str
    """The public API (OpenAI routes only)."""
    admin: str
    """The admin port: /livez, /readyz, /metrics."""
    service: Service | None = None
    proc: asyncio.subprocess.Process | None = None
    stop_event: asyncio.Event | None = None
    task: asyncio.Task[None] | None = None

    def openai(self, api_key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=api_key, max_retries=0)

    async def stop(self) -> None:
        if self.task is not None and self.stop_event is not None:
            self.stop_event.set()
            await self.task
            self.task = None
        if self.proc is not None:
            await stop_process(self.proc)


@dataclass
class Routers:
    workdir: Path
    nats_url: str
    redis_url: str
    running: list[RouterHandle] = field(default_factory=list)

    def settings(self, **overrides: Any) -> RouterSettings:
        values: dict[str, Any] = {
            "nats": {"url": self.nats_url, "connect_deadline": 10},
            "redis": {"url": self.redis_url, "socket_timeout": 0.5},
            "http": {"port": 0},
            "health": {"port": 0},
            "usage": {"spool_dir": str(self.workdir / "spool"), "publish_timeout": 0.5},
            "shutdown": {"drain_timeout": 5},
        }
        for group, value in overrides.items():
            if isinstance(value, dict) and isinstance(values.get(group), dict):
                values[group] = {**values[group], **value}
            else:
                values[group] = value
        return RouterSettings.model_validate(values)

    async def start(self, **overrides: Any) -> RouterHandle:
        settings = self.settings(**overrides)
        stop = asyncio.Event()
        started: asyncio.Future[Service] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            run_until_stopped(
                "arks-router", settings, lifespan, stop, on_started=started.set_result
            ),
            name="router-under-test",
        )
        done, _ = await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
            raise RuntimeError("router stopped before it started")
        service = started.result()
        handle = RouterHandle(
            f"http://127.0.0.1:{service.http_port}",
            f"http://127.0.0.1:{service.health_port}",
            service,
            None,
            stop,
            task,
        )
        self.running.append(handle)
        await wait_http(handle.admin + "/readyz")
        return handle

    async def spawn(self, *, ready: bool = True, **env: str) -> RouterHandle:
        port, admin = free_port(), free_port()
        variables = {
            "ARKS_NATS__URL": self.nats_url,
            "ARKS_NATS__CONNECT_DEADLINE": "10",
            "ARKS_REDIS__URL": self.redis_url,
            "ARKS_HTTP__PORT": str(port),
            "ARKS_HEALTH__PORT": str(admin),
            "ARKS_USAGE__SPOOL_DIR": str(self.workdir / "spool"),
            "ARKS_USAGE__PUBLISH_TIMEOUT": "0.5",
            "ARKS_TELEMETRY__LOG_JSON": "false",
            **env,
        }
        log = (self.workdir / f"router-{port}.log").open("ab")
        proc = await asyncio.create_subprocess_exec(
            ROUTER_SCRIPT, stdout=log, stderr=log, env={**os.environ, **variables}
        )
        log.close()
        handle = RouterHandle(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}", proc=proc)
        self.running.append(handle)
        if ready:
            await wait_http(handle.admin + "/readyz", proc=proc)
        return handle

    async def stop_all(self) -> None:
        for handle in self.running:
            await handle.stop()


@pytest.fixture
async def routers(
    tmp_path: Path, nats_server: Any, valkey_server: Any, bus: Bus
) -> AsyncIterator[Routers]:
    running = Routers(tmp_path, nats_server.url, valkey_server.url)
    try:
        yield running
    finally:
        await running.stop_all()


# ----------------------------------------------------------------------------- accountants


@dataclass
class Accountants:
    workdir: Path
    nats_url: str
    redis_url: str
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)

    async def spawn(self, **env: str) -> asyncio.subprocess.Process:
        port = free_port()
        variables = {
            "ARKS_NATS__URL": self.nats_url,
            "ARKS_NATS__CONNECT_DEADLINE": "10",
            "ARKS_REDIS__URL": self.redis_url,
            "ARKS_HEALTH__PORT": str(port),
            "ARKS_STATUS__WRITER": "none",
            "ARKS_TELEMETRY__LOG_JSON": "false",
            **env,
        }
        log = (self.workdir / f"accountant-{port}.log").open("ab")
        proc = await asyncio.create_subprocess_exec(
            ACCOUNTANT_SCRIPT, stdout=log, stderr=log, env={**os.environ, **variables}
        )
        log.close()
        self.procs.append(proc)
        await wait_http(f"http://127.0.0.1:{port}/readyz", within=30, proc=proc)
        return proc

    async def stop_all(self) -> None:
        for proc in self.procs:
            await stop_process(proc)


@pytest.fixture
async def accountants(
    tmp_path: Path, nats_server: Any, valkey_server: Any, bus: Bus
) -> AsyncIterator[Accountants]:
    running = Accountants(tmp_path, nats_server.url, valkey_server.url)
    try:
        yield running
    finally:
        await running.stop_all()


# ----------------------------------------------------------------------------- KV state


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class State:
    bus: Bus

    async def route(
        self,
        endpoint: str,
        urls: list[str],
        *,
        namespace: str = "default",
        weights: list[int] | None = None,
        **fields: Any,
    ) -> RouteTable:
        table = RouteTable(
            namespace=namespace,
            endpoint=endpoint,
            backends=[
                RouteBackend(
                    name=f"{endpoint}-{i}",
                    url=url,
                    weight=(weights or [1] * len(urls))[i],
                    replica=f"{endpoint}-{i}-replica",
                )
                for i, url in enumerate(urls)
            ],
            **fields,
        )
        kv = await self.bus.kv(subjects.ROUTES_BUCKET)
        await kv.put(subjects.namespaced_key(namespace, endpoint), table.to_bytes())
        return table

    async def token(
        self,
        token: str,
        endpoints: list[str],
        *,
        namespace: str = "default",
        name: str = "tok",
        quota: str | None = None,
        **limits: int,
    ) -> TokenGrant:
        grant = TokenGrant(
            namespace=namespace,
            token_name=name,
            grants=[
                EndpointGrant(
                    endpoint=endpoint,
                    rate_limits=[RateLimitValue(type=k, value=v) for k, v in limits.items()],  # type: ignore[arg-type]
                    quota=quota,
                )
                for endpoint in endpoints
            ],
        )
        kv = await self.bus.kv(subjects.TOKENS_BUCKET)
        await kv.put(digest(token), grant.to_bytes())
        return grant

    async def quota(self, spec: QuotaSpec) -> None:
        kv = await self.bus.kv(subjects.QUOTAS_BUCKET)
        await kv.put(subjects.namespaced_key(spec.namespace, spec.name), spec.to_bytes())


@pytest.fixture
def state(bus: Bus) -> State:
    return State(bus)


@dataclass
class UsageLog:
    bus: Bus

    async def all(self) -> list[UsageRecorded]:
        """Every UsageRecorded in the ARKS_USAGE stream, in stream order."""
        try:
            info = await self.bus.js.stream_info(subjects.USAGE_STREAM)
        except nats.js.errors.NotFoundError:
            return []
        events: list[UsageRecorded] = []
        if info.state.messages == 0:
            return events
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                msg = await self.bus.js.get_msg(subjects.USAGE_STREAM, seq)
                events.append(UsageRecorded.from_bytes(msg.data or b""))
        return events

    async def wait(
        self,
        count: int,
        within: float = 10.0,
        check: Callable[[list[UsageRecorded]], bool] | None = None,
    ) -> list[UsageRecorded]:
        """At least `count` events (and `check` true of them), or fail after `within` s."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            events = await self.all()
            if len(events) >= count and (check is None or check(events)):
                return events
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"expected {count} usage events, found {len(events)}")
            await asyncio.sleep(0.05)


@pytest.fixture
def usage(bus: Bus) -> UsageLog:
    return UsageLog(bus)


# ----------------------------------------------------------------------------- raw HTTP


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)


async def raw_http(
    base_url: str,
    method: str,
    target: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | dict[str, Any] | None = None,
    request: bytes | None = None,
) -> RawResponse:
    """One request written exactly as given (`target` is not normalised in any way), or
    the bytes of `request` verbatim; the connection is closed after the response."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    if request is None:
        payload = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
        lines = [f"{method} {target} HTTP/1.1", f"host: {host}:{port}", "connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if payload or method in ("POST", "PUT", "PATCH"):
            lines += ["content-type: application/json", f"content-length: {len(payload)}"]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    if parsed.get("transfer-encoding") == "chunked":
        rest = _dechunk(rest)
    return RawResponse(int(status_line.split()[1]), parsed, rest)


# ----------------------------------------------------------------------------- taps

# Not anchored: on a kept-alive connection a request line follows the previous body.
_REQUEST_LINE = re.compile(
    rb"(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS|TRACE|CONNECT) (\S+) HTTP/1\.[01]\r\n"
)


@dataclass
class Tap:
    """A TCP relay in front of an engine that records every byte sent to the engine."""

    upstream: str
    sent: bytearray = field(default_factory=bytearray)
    url: str = ""
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _handlers: set[asyncio.Task[Any]] = field(default_factory=set)

    def requests(self) -> list[str]:
        """`METHOD target` of every request the engine was sent, in order."""
        return [
            f"{m.group(1).decode()} {m.group(2).decode('latin-1')}"
            for m in _REQUEST_LINE.finditer(bytes(self.sent))
        ]

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        host, port = self.upstream.removeprefix("http://").rsplit(":", 1)
        try:
            engine_r, engine_w = await asyncio.open_connection(host, int(port))
        except OSError:
            client_w.close()
            self._handlers.discard(task)
            return
        self._writers |= {client_w, engine_w}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, record: bool) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while chunk := await src.read(65536):
                    if record:
                        self.sent += chunk
                    dst.write(chunk)
                    await dst.drain()
            dst.close()

        try:
            await asyncio.gather(pipe(client_r, engine_w, True), pipe(engine_r, client_w, False))
        finally:
            self._writers -= {client_w, engine_w}
            self._handlers.discard(task)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=5)
        if self._server is not None:
            await self._server.wait_closed()


@dataclass
class Taps:
    running: list[Tap] = field(default_factory=list)

    async def start(self, upstream: str) -> Tap:
        tap = Tap(upstream)
        await tap.start()
        self.running.append(tap)
        return tap


@pytest.fixture
async def taps() -> AsyncIterator[Taps]:
    made = Taps()
    try:
        yield made
    finally:
        for tap in made.running:
            await tap.stop()


@pytest.fixture
def raw() -> Callable[..., Any]:
    """`await raw(base_url, method, target, headers=..., body=...)`: see `raw_http`."""
    return raw_http
