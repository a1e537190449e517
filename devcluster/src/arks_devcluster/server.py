"""Serving a `FakeKubeApi` over HTTP with uvicorn, in this event loop.

`serve()` is the in-process form tests use (an async context manager yielding the API
and its base URL); `run()` is the standalone form behind `arks-devcluster serve`. The
listening socket is bound before uvicorn starts, so the port is ours from the start and
no other process can take it in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import uvicorn

from arks_devcluster.api import FakeKubeApi


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


@contextlib.asynccontextmanager
async def serve(
    api: FakeKubeApi | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[tuple[FakeKubeApi, str]]:
    """Serve an API (a new one by default) until the block ends: (api, base URL)."""
    api = api or FakeKubeApi()
    sock = bind(host, port)
    bound = int(sock.getsockname()[1])
    config = uvicorn.Config(api.app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="fake-kube-api")
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield api, f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        await task
        sock.close()
