"""Assembling and running one simulator: engine loop + ASGI app + uvicorn, and the
loading sequence between them.

`Simulator(settings)` validates the configuration at once (ConfigError). `run()` starts
the scheduler loop, then either
- `while_loading="unavailable"`: binds and serves immediately (503 until loaded) while
  the model loads, or
- `while_loading="refuse"`: loads first and only then binds the port, so connections
  are refused while "loading" (as a real vLLM process behaves).
`request_stop()` (SIGTERM/SIGINT in the CLI) lets uvicorn drain in-flight requests for
`shutdown_timeout` seconds; during a refuse-mode load it cancels the run instead.

The listening socket is bound here, not by uvicorn, so `port` is known as soon as it is
bound (also with `--port 0`). Errors while loading propagate out of `run()` inside an
ExceptionGroup.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from arks_engine_sim.app import ARRIVAL_KEY, SimApp
from arks_engine_sim.loading import load_model, resolve_max_model_len
from arks_engine_sim.metrics import CacheInfo, EngineStats, MetricsEndpoint, SimCollector
from arks_engine_sim.scheduling import Engine
from arks_engine_sim.settings import SimSettings

log = logging.getLogger(__name__)


class ArrivalStampingProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, stamping each request with the moment its first bytes
    were parsed. Under a burst, hundreds of requests are read before the first handler
    runs; TTFT measured from handler start would miss that queueing, which clients see."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        cast(dict[str, Any], self.scope)[ARRIVAL_KEY] = time.monotonic()


def bind_socket(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(4096)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class Simulator:
    def __init__(self, settings: SimSettings) -> None:
        self.settings = settings
        self.max_model_len = resolve_max_model_len(settings)
        self.stats = EngineStats(max_model_len=self.max_model_len)
        self.engine = Engine(settings, self.stats)
        collector = SimCollector(
            self.stats,
            self.engine,
            model_name=settings.model_names[0],
            style=settings.metrics_style,
            cache=CacheInfo(
                block_size=settings.block_size,
                num_gpu_blocks=settings.num_kv_blocks,
                enable_prefix_caching=settings.enable_prefix_caching,
            ),
        )
        self.app = SimApp(settings, self.engine, self.stats, MetricsEndpoint(collector))
        self.port: int | None = None
        self.loaded = asyncio.Event()
        self.listening = asyncio.Event()
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        host = self.settings.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def request_stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        elif self._task is not None:
            self._task.cancel()

    async def run(self) -> None:
        self._task = asyncio.current_task()
        async with asyncio.TaskGroup() as tasks:
            engine_task = tasks.create_task(self.engine.run(), name="engine-sim scheduler")
            try:
                if self.settings.while_loading == "refuse":
                    await self._load()
                    await self._serve()
                else:
                    loading = tasks.create_task(self._load(), name="engine-sim loading")
                    await self._serve()
                    loading.cancel()
            finally:
                engine_task.cancel()

    async def _load(self) -> None:
        runtime = await load_model(self.settings, self.max_model_len)
        self.app.runtime = runtime
        self.loaded.set()
        if self.settings.fault_crash_after == 0:
            self.stats.fault("crash")
            self.app.crash(self.settings.fault_crash_exit_code)

    async def _serve(self) -> None:
        s = self.settings
        sock = bind_socket(s.host, s.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            http=ArrivalStampingProtocol,
            ws="none",
            log_config=None,
            log_level=s.uvicorn_log_level,
            access_log=False,
            server_header=False,
            proxy_headers=False,  # nothing to rewrite; saves a middleware hop per request
            backlog=4096,
            timeout_graceful_shutdown=int(s.shutdown_timeout),
        )
        self._server = uvicorn.Server(config)
        log.info(
            "listening on %s: served=%s max_num_seqs=%d kv_blocks=%d block_size=%d "
            "time_scale=%g metrics=%s",
            self.base_url,
            ",".join(s.model_names),
            s.max_num_seqs,
            s.num_kv_blocks,
            s.block_size,
            s.time_scale,
            s.metrics_style,
        )
        self.listening.set()
        try:
            await self._server.serve(sockets=[sock])
        finally:
            sock.close()
