"""How every Arks service starts, runs and stops.

    def main() -> None:
        run_service("arks-accountant", AccountantSettings(), lifespan)

`lifespan(service)` is an async context manager: it opens the clients the service
needs, spawns its long-running tasks with `service.spawn()`, and yields either the
ASGI app to serve (the router's API) or None. Either way a small admin app with
`/livez`, `/readyz` and `/metrics` is served on `settings.health` (127.0.0.1 by
default); a service's own app is served beside it on its own address, so a public API
port never exposes metrics. Leaving the context closes the clients.

Shutdown is structured: SIGTERM or SIGINT sets `service.stop`; `/readyz` turns 503 at
once (draining); the HTTP server stops accepting and finishes in-flight requests; the
tasks, which all watch `service.stop`, get `settings.shutdown.drain_timeout` seconds
to finish on their own, then whatever is left is cancelled. A task that crashes stops
the whole service (TaskGroup semantics) so a supervisor restarts it, rather than
leaving a half-working process that still answers `/livez`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from arks_common import telemetry
from arks_common.errors import ArksError
from arks_common.settings import ServiceSettings

log = logging.getLogger(__name__)


class Health:
    """Readiness is the conjunction of named checks, and false while draining."""

    def __init__(self) -> None:
        self._checks: dict[str, bool] = {}
        self.draining = False

    def require(self, *names: str) -> None:
        """Declare checks that must pass before the service is ready."""
        for name in names:
            self._checks.setdefault(name, False)

    def set(self, name: str, ok: bool) -> None:
        self._checks[name] = ok

    @property
    def ready(self) -> bool:
        return not self.draining and all(self._checks.values())

    def report(self) -> dict[str, Any]:
        return {"ready": self.ready, "draining": self.draining, "checks": dict(self._checks)}


@dataclass(frozen=True)
class HttpApp:
    """The ASGI app a service serves, and where."""

    app: ASGIApp
    host: str
    port: int
    protocol: type[asyncio.Protocol] | None = None
    """uvicorn's HTTP protocol class to use (None: uvicorn's default), e.g. one that
    answers unparseable requests in the service's own error format."""


@dataclass
class Service:
    name: str
    settings: ServiceSettings
    stop: asyncio.Event
    health: Health
    registry: CollectorRegistry
    _tg: asyncio.TaskGroup
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    http_port: int | None = None
    """The bound port of the service's app (the admin app's when it has none), known once
    the server listens (useful with port 0)."""
    health_port: int | None = None
    """The bound port of the admin app (`/livez`, `/readyz`, `/metrics`)."""

    def spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a long-lived task under the service's TaskGroup; it must watch `stop`."""
        task = self._tg.create_task(coro, name=f"{self.name}:{name}")
        self._tasks.append(task)
        return task


Lifespan = Callable[[Service], AbstractAsyncContextManager[HttpApp | None]]


def health_routes(service: Service) -> list[Route]:
    """`/livez`, `/readyz` and `/metrics`, for apps that serve their own routes too."""

    async def livez(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        report = service.health.report()
        return JSONResponse(report, status_code=200 if report["ready"] else 503)

    async def metrics(_: Request) -> Response:
        return Response(
            telemetry.render_metrics(service.registry),
            media_type=telemetry.METRICS_CONTENT_TYPE,
        )

    return [
        Route("/livez", livez, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    # Naming the protocol matters: asyncio sets TCP_NODELAY on accepted sockets only when
    # the listening socket's proto is IPPROTO_TCP (proto 0 is not recognised), and without
    # it every keep-alive response waits ~40 ms for the client's delayed ACK.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve(name: str, settings: ServiceSettings, lifespan: Lifespan) -> None:
    """Run a service until SIGTERM/SIGINT (or `stop` is set), then drain and return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Not every loop can take signal handlers (outside the main thread: RuntimeError;
        # loops without them: NotImplementedError); such a service stops through `stop`.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await run_until_stopped(name, settings, lifespan, stop)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


async def until_set(event: asyncio.Event, stop: asyncio.Event) -> bool:
    """Wait until `event` or `stop` is set; True when `event` is (even if both are)."""
    if not event.is_set() and not stop.is_set():
        waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
    return event.is_set()


async def run_until_stopped(
    name: str,
    settings: ServiceSettings,
    lifespan: Lifespan,
    stop: asyncio.Event,
    *,
    on_started: Callable[[Service], None] | None = None,
) -> None:
    """The body of `serve()`, with the stop event supplied (tests set it themselves)."""
    health = Health()
    registry = telemetry.new_registry()
    with contextlib.ExitStack() as sockets:
        await _run(name, settings, lifespan, stop, on_started, health, registry, sockets)
    log.info("%s stopped", name)


async def _run(
    name: str,
    settings: ServiceSettings,
    lifespan: Lifespan,
    stop: asyncio.Event,
    on_started: Callable[[Service], None] | None,
    health: Health,
    registry: CollectorRegistry,
    sockets: contextlib.ExitStack,
) -> None:
    async with asyncio.TaskGroup() as tg:
        service = Service(name, settings, stop, health, registry, tg)
        async with lifespan(service) as http:
            admin = HttpApp(
                Starlette(routes=health_routes(service)), settings.health.host, settings.health.port
            )
            servers: list[tuple[_Server, asyncio.Task[None]]] = []
            for app in (admin,) if http is None else (http, admin):
                server = _Server(
                    uvicorn.Config(
                        app.app,
                        http=app.protocol or "auto",
                        log_config=None,
                        access_log=False,
                        lifespan="off",
                        timeout_graceful_shutdown=int(settings.shutdown.drain_timeout),
                        timeout_keep_alive=30,
                    )
                )
                sock = sockets.enter_context(_bind(app.host, app.port))
                port = sock.getsockname()[1]
                if app is admin:
                    service.health_port = port
                if service.http_port is None:
                    service.http_port = port
                task = tg.create_task(server.serve(sockets=[sock]), name=f"{name}:http:{port}")
                servers.append((server, task))
                log.info(
                    "%s listening on %s:%s%s", name, app.host, port, " (admin)" * (app is admin)
                )
            if on_started is not None:
                on_started(service)
            await stop.wait()
            log.info("%s draining", name)
            health.draining = True
            for server, _ in servers:
                server.should_exit = True
            await _drain(service, settings.shutdown.drain_timeout)
            await asyncio.wait(
                [task for _, task in servers], timeout=settings.shutdown.drain_timeout
            )
            for server, task in servers:
                if not task.done():
                    server.force_exit = True
                    task.cancel()


async def _drain(service: Service, deadline: float) -> None:
    pending = [t for t in service._tasks if not t.done()]
    if not pending:
        return
    _, still = await asyncio.wait(pending, timeout=deadline)
    for task in still:
        log.warning("cancelling %s after the drain deadline", task.get_name())
        task.cancel()
    if still:
        await asyncio.wait(still)


EXIT_RETRYABLE = 75
"""A RetryableError stopped the service (EX_TEMPFAIL): starting again later may work."""
EXIT_PERMANENT = 78
"""A PermanentError stopped the service (EX_CONFIG): its configuration must change."""


def run_service(name: str, settings: ServiceSettings, lifespan: Lifespan) -> None:
    """Configure logging and tracing, then run the service on uvloop when available.

    A service that stops on one of our errors (a dependency unreachable past its
    deadline, a configuration that cannot work) logs its message, without a traceback,
    and exits with EXIT_RETRYABLE or EXIT_PERMANENT, so a supervisor and an operator
    can tell which it is; anything else propagates as a crash.
    """
    telemetry.configure_logging(name, settings.telemetry)
    telemetry.configure_tracing(name, settings.telemetry)
    try:
        import uvloop

        runner: Callable[[Coroutine[Any, Any, None]], None] = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        runner(serve(name, settings, lifespan))
    except (ArksError, ExceptionGroup) as exc:
        error = _only_arks_error(exc)
        if error is None:
            raise
        log.critical(
            "%s stopped: %s (%s)",
            name,
            error.message,
            "it may start later" if error.retryable else "change the configuration",
        )
        raise SystemExit(EXIT_RETRYABLE if error.retryable else EXIT_PERMANENT) from None


def _only_arks_error(exc: BaseException) -> ArksError | None:
    """The (first) ArksError when `exc` is one, or a group of nothing else."""
    if isinstance(exc, ArksError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        found = [_only_arks_error(e) for e in exc.exceptions]
        if found and all(e is not None for e in found):
            return found[0]
    return None


@contextlib.asynccontextmanager
async def no_resources(_: Service) -> AsyncIterator[None]:
    """A lifespan for services with nothing of their own to open yet."""
    yield None
