"""The rig the router benchmarks share: brokers, engine simulators, routers, load.

Core budget (2 cores): the router under test is pinned to core 0; NATS, Valkey, the
simulators and the load generator share core 1 (anchors.md §11). Every figure is
reported with that budget.

- `Rig`: starts nats-server and Valkey (arks_common.embedded), engine-sim processes
  and `arks-router` processes (their stdout/stderr under the bench's workdir), and
  publishes the KV state (route tables, token grants, quotas) the routers read.
- `Load`: an aiohttp client pinned to this process (which runs on core 1) that sends
  chat requests (streaming or not) and records latency, TTFT and errors per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from arks_common import subjects
from arks_common.embedded import NatsServer, ValkeyServer
from arks_common.events import (
    EndpointGrant,
    QuotaLimit,
    QuotaSpec,
    RateLimitValue,
    RouteBackend,
    RouteTable,
    TokenGrant,
)
from arks_common.messaging import Bus
from arks_common.settings import NatsSettings
from bench.common import BenchContext, free_port, process, venv_bin

ROUTER_CPU = 0
SIDE_CPU = 1


def pin_self(cpu: int = SIDE_CPU) -> None:
    """Pin this (load generator) process to one core, when the OS allows it."""
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setaffinity(0, {cpu})


def _pin(pid: int | None, cpu: int) -> None:
    if pid is not None:
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setaffinity(pid, {cpu})


async def wait_ready(
    url: str, proc: asyncio.subprocess.Process | None = None, within: float = 60
) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc is not None and proc.returncode is not None:
                raise RuntimeError(f"{url}: process exited with {proc.returncode}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{url} not ready within {within}s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@dataclass
class Rig:
    ctx: BenchContext
    stack: AsyncExitStack
    nats: NatsServer
    valkey: ValkeyServer
    bus: Bus
    routers: list[str] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)

    async def sim(self, name: str = "m", *, cpu: int = SIDE_CPU, **env: str) -> str:
        port = free_port()
        variables = {f"ARKS_SIM_{k.upper()}": v for k, v in env.items()}
        proc = await self.stack.enter_async_context(
            process(
                [
                    venv_bin("arks-engine-sim"),
                    "--model", name,
                    "--served-model-name", name,
                    "--host", "127.0.0.1",
                    "--port", str(port),
                    "--uvicorn-log-level", "warning",
                ],
                log=self.ctx.workdir / f"sim-{port}.log",
                env=variables,
                cpu=cpu,
            )
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        await wait_ready(url + "/health", proc)
        self.pids[url] = proc.pid
        return url

    async def router(self, *, cpu: int | None = ROUTER_CPU, **env: str) -> str:
        port, admin = free_port(), free_port()
        variables = {
            "ARKS_NATS__URL": self.nats.url,
            "ARKS_REDIS__URL": self.valkey.url,
            "ARKS_HTTP__PORT": str(port),
            "ARKS_HEALTH__PORT": str(admin),
            "ARKS_USAGE__SPOOL_DIR": str(self.ctx.workdir / "spool"),
            "ARKS_TELEMETRY__LOG_LEVEL": "WARNING",
            **env,
        }
        proc = await self.stack.enter_async_context(
            process(
                [venv_bin("arks-router")],
                log=self.ctx.workdir / f"router-{port}.log",
                env=variables,
                cpu=cpu,
            )
        )
        url = f"http://127.0.0.1:{port}"
        await wait_ready(f"http://127.0.0.1:{admin}/readyz", proc)
        self.routers.append(url)
        self.pids[url] = proc.pid
        return url

    def cpu_seconds(self, url: str) -> float:
        """CPU time (user + system) the process serving `url` has used so far."""
        return cpu_seconds(self.pids[url])

    async def route(self, endpoint: str, urls: Sequence[str], **fields: Any) -> None:
        table = RouteTable(
            namespace="default",
            endpoint=endpoint,
            backends=[RouteBackend(name=f"{endpoint}-{i}", url=url) for i, url in enumerate(urls)],
            **fields,
        )
        kv = await self.bus.kv(subjects.ROUTES_BUCKET)
        await kv.put(subjects.namespaced_key("default", endpoint), table.to_bytes())

    async def token(
        self, token: str, endpoints: Sequence[str], *, quota: str | None = None, **limits: int
    ) -> None:
        grant = TokenGrant(
            namespace="default",
            token_name=f"bench-{hashlib.sha256(token.encode()).hexdigest()[:8]}",
            grants=[
                EndpointGrant(
                    endpoint=endpoint,
                    rate_limits=[
                        RateLimitValue(type=kind, value=value)  # type: ignore[arg-type]
                        for kind, value in limits.items()
                    ],
                    quota=quota,
                )
                for endpoint in endpoints
            ],
        )
        kv = await self.bus.kv(subjects.TOKENS_BUCKET)
        await kv.put(hashlib.sha256(token.encode()).hexdigest(), grant.to_bytes())

    async def quota(self, name: str, **limits: int) -> None:
        spec = QuotaSpec(
            namespace="default",
            name=name,
            limits=[QuotaLimit(type=k, value=v) for k, v in limits.items()],  # type: ignore[arg-type]
        )
        kv = await self.bus.kv(subjects.QUOTAS_BUCKET)
        await kv.put(subjects.namespaced_key("default", name), spec.to_bytes())

    async def usage_count(self) -> int:
        info = await self.bus.js.stream_info(subjects.USAGE_STREAM)
        return int(info.state.messages)


@asynccontextmanager
async def rig(ctx: BenchContext) -> AsyncIterator[Rig]:
    pin_self(SIDE_CPU)
    async with AsyncExitStack() as stack:
        nats = NatsServer(ctx.workdir / "nats", log_file=ctx.workdir / "nats.log")
        valkey = ValkeyServer(ctx.workdir / "valkey", log_file=ctx.workdir / "valkey.log")
        nats.start()
        stack.callback(nats.stop)
        valkey.start()
        stack.callback(valkey.stop)
        for server in (nats, valkey):
            _pin(server.proc.pid if server.proc else None, SIDE_CPU)
        bus = await Bus.connect(NatsSettings(url=nats.url, connect_deadline=10), name="bench")
        stack.push_async_callback(bus.close)
        await bus.ensure_topology()
        yield Rig(ctx, stack, nats, valkey, bus)


# ----------------------------------------------------------------------------- load


def chat_body(prompt_chars: int, max_tokens: int, *, stream: bool, seed: int = 0) -> bytes:
    """A chat request whose prompt is about prompt_chars / 4 tokens, unique per seed."""
    base = f"Request {seed}: summarise the following operations log. "
    filler = "The replica reported nominal latency and steady queue depth. "
    text = (base + filler * (prompt_chars // len(filler) + 1))[:prompt_chars]
    return orjson.dumps(
        {
            "model": "m",
            "messages": [{"role": "user", "content": text}],
            "max_tokens": max_tokens,
            "stream": stream,
        }
    )


@dataclass
class Outcome:
    status: int
    latency: float
    ttft: float
    error: str = ""


class Load:
    """Sends requests and records what each one took, as a client sees it."""

    def __init__(self, connections: int = 1100) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=300),
            skip_auto_headers=("Accept-Encoding", "User-Agent"),
        )

    async def close(self) -> None:
        await self.session.close()

    async def one(self, url: str, body: bytes, token: str | None = None) -> Outcome:
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        started = time.perf_counter()
        ttft = 0.0
        try:
            async with self.session.post(url, data=body, headers=headers) as response:
                status = response.status
                first = True
                async for _ in response.content.iter_any():
                    if first:
                        ttft = time.perf_counter() - started
                        first = False
            return Outcome(status, time.perf_counter() - started, ttft)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Outcome(0, time.perf_counter() - started, 0.0, repr(exc))

    async def open_loop(
        self, url: str, bodies: Sequence[bytes], rate: float, token: str | None, seed: int = 1
    ) -> tuple[list[Outcome], float]:
        """Poisson arrivals at `rate` per second; returns outcomes and achieved rate."""
        import random

        rng = random.Random(seed)
        tasks: list[asyncio.Task[Outcome]] = []
        started = time.perf_counter()
        due = started
        for body in bodies:
            due += rng.expovariate(rate)
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.one(url, body, token)))
        outcomes = await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        return list(outcomes), len(bodies) / elapsed


# ----------------------------------------------------------------------------- LiteLLM

LITELLM_VENV = Path(__file__).resolve().parent / ".litellm-venv"
LITELLM_KEY = "sk-litellm-bench"


async def ensure_litellm(ctx: BenchContext) -> Path | None:
    """LiteLLM's proxy in a virtualenv of its own (never in the workspace lock, whose
    pins it would fight); installed with pip on first use. None when it cannot be."""
    script = LITELLM_VENV / "bin" / "litellm"
    if script.exists():
        return script
    ctx.note(f"installing LiteLLM into {LITELLM_VENV} (first run only)")
    log = ctx.workdir / "litellm-install.log"
    steps = [
        ["python3.11", "-m", "venv", str(LITELLM_VENV)],
        [str(LITELLM_VENV / "bin" / "pip"), "install", "--quiet", "litellm[proxy]"],
    ]
    for argv in steps:
        with log.open("ab") as sink:
            proc = await asyncio.create_subprocess_exec(*argv, stdout=sink, stderr=sink)
        try:
            code = await asyncio.wait_for(proc.wait(), 1200)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            code = -1
        if code != 0:
            ctx.note(f"LiteLLM install failed ({argv[0]} exited {code}); see {log}")
            return None
    return script if script.exists() else None


async def start_litellm(rig_: Rig, script: Path, sim_url: str, *, cpu: int = ROUTER_CPU) -> str:
    """LiteLLM's proxy in front of the same simulator: master-key auth (it has no
    Postgres here, so no virtual keys or budgets: that spares it work the router does)."""
    port = free_port()
    config = rig_.ctx.workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: m\n"
        "    litellm_params:\n"
        "      model: openai/m\n"
        f"      api_base: {sim_url}/v1\n"
        "      api_key: none\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
    )
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    proc = await rig_.stack.enter_async_context(
        process(
            [str(script), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
            log=rig_.ctx.workdir / "litellm.log",
            env=env,
            cpu=cpu,
        )
    )
    url = f"http://127.0.0.1:{port}"
    await wait_ready(url + "/health/liveliness", proc, within=180)
    rig_.pids[url] = proc.pid
    return url
