"""run_service: health endpoints, task supervision and graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import Counter

from arks_common import runtime
from arks_common.settings import ServiceSettings


async def test_health_and_graceful_drain() -> None:
    stop = asyncio.Event()
    started: asyncio.Future[runtime.Service] = asyncio.get_running_loop().create_future()
    finished: list[str] = []

    async def worker(service: runtime.Service) -> None:
        await service.stop.wait()
        await asyncio.sleep(0.05)  # finishing in-flight work after the signal
        finished.append("worker")

    @contextlib.asynccontextmanager
    async def lifespan(service: runtime.Service) -> AsyncIterator[None]:
        service.health.require("dependency")
        service.spawn("worker", worker(service))
        yield None
        finished.append("closed clients")

    settings = ServiceSettings()
    task = asyncio.create_task(
        runtime.run_until_stopped("test", settings, lifespan, stop, on_started=started.set_result)
    )
    service = await asyncio.wait_for(started, 10)
    base = f"http://127.0.0.1:{service.http_port}"
    async with httpx.AsyncClient(base_url=base) as client:
        assert (await client.get("/livez")).status_code == 200
        assert (await client.get("/readyz")).status_code == 503
        service.health.set("dependency", True)
        assert (await client.get("/readyz")).json()["ready"] is True
        assert (await client.get("/metrics")).status_code == 200
    stop.set()
    await asyncio.wait_for(task, 10)
    assert finished == ["worker", "closed clients"]


async def test_a_service_app_is_served_apart_from_health_and_metrics() -> None:
    stop = asyncio.Event()
    started: asyncio.Future[runtime.Service] = asyncio.get_running_loop().create_future()

    async def api(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    @contextlib.asynccontextmanager
    async def lifespan(service: runtime.Service) -> AsyncIterator[runtime.HttpApp]:
        Counter("svc_things", "Things.", registry=service.registry).inc()
        yield runtime.HttpApp(api, "127.0.0.1", 0)

    settings = ServiceSettings()
    task = asyncio.create_task(
        runtime.run_until_stopped("test", settings, lifespan, stop, on_started=started.set_result)
    )
    service = await asyncio.wait_for(started, 10)
    assert service.http_port != service.health_port
    async with httpx.AsyncClient() as client:
        public = await client.get(f"http://127.0.0.1:{service.http_port}/metrics")
        admin = await client.get(f"http://127.0.0.1:{service.health_port}/metrics")
        livez = await client.get(f"http://127.0.0.1:{service.health_port}/livez")
    assert public.text == "/metrics"  # the service's own app answered, not the registry
    assert "svc_things_total 1.0" in admin.text
    assert livez.json() == {"status": "ok"}
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_stuck_task_is_cancelled_after_the_drain_deadline() -> None:
    stop = asyncio.Event()
    cancelled = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    @contextlib.asynccontextmanager
    async def lifespan(service: runtime.Service) -> AsyncIterator[None]:
        service.spawn("stuck", stuck())
        yield None

    settings = ServiceSettings.model_validate({"shutdown": {"drain_timeout": 0.2}})
    task = asyncio.create_task(runtime.run_until_stopped("t", settings, lifespan, stop))
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert cancelled.is_set()


def test_sigterm_stops_a_service_process_cleanly(tmp_path) -> None:
    script = tmp_path / "svc.py"
    script.write_text(
        textwrap.dedent(
            """
            import contextlib
            from arks_common import runtime
            from arks_common.settings import ServiceSettings

            @contextlib.asynccontextmanager
            async def lifespan(service):
                print("ready", flush=True)
                yield None
                print("closed", flush=True)

            runtime.run_service("svc", ServiceSettings(), lifespan)
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "ARKS_TELEMETRY__LOG_JSON": "false"},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert b"closed" in out


@pytest.mark.parametrize(
    ("error", "status"),
    [("PermanentError('no such thing: set X')", 78), ("RetryableError('nats is away')", 75)],
)
def test_a_service_stopped_by_our_error_says_why_and_which_kind(tmp_path, error, status):
    script = tmp_path / "svc.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import contextlib
            from arks_common import runtime
            from arks_common.errors import PermanentError, RetryableError
            from arks_common.settings import ServiceSettings

            @contextlib.asynccontextmanager
            async def lifespan(service):
                raise {error}
                yield None

            runtime.run_service("svc", ServiceSettings(), lifespan)
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        timeout=60,
        env={**os.environ, "ARKS_TELEMETRY__LOG_JSON": "false"},
        check=False,
    )
    assert proc.returncode == status
    assert b"svc stopped:" in proc.stderr
    assert b"Traceback" not in proc.stderr


async def test_accepted_sockets_of_a_service_have_tcp_nodelay() -> None:
    """The listening socket names TCP, so asyncio sets TCP_NODELAY on what it accepts and
    keep-alive responses do not wait for the client's delayed ACK."""
    import socket

    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    sock = runtime._bind("127.0.0.1", 0)
    server = await asyncio.start_server(on_connect, sock=sock)
    async with server:
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        assert await asyncio.wait_for(accepted, 10) != 0
        writer.close()
        await writer.wait_closed()
