"""Serving a `FakeKubeApi` over HTTP with uvicorn, in this event loop.

`serve()` is the in-process form tests use (an async context manager yielding the API
and its base URL); `serving()` yields a `Serving` with the uvicorn server too (its open
connections, for tests of the transport). The listening socket is bound before uvicorn
starts, so the port is ours from the start and no other process can take it.

The socket names TCP as its protocol: asyncio sets TCP_NODELAY on accepted connections
only then, and without it every keep-alive response waits for the client's delayed ACK
(~40 ms per request instead of ~1.5 ms). `nodelay=False` keeps the old behaviour, for the
benchmark's baseline only.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from arks_devcluster.api import FakeKubeApi
from arks_devcluster.tls import self_signed


def bind(host: str, port: int, *, nodelay: bool = True) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    proto = socket.IPPROTO_TCP if nodelay else 0
    sock = socket.socket(family, socket.SOCK_STREAM, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


@dataclass
class Serving:
    api: FakeKubeApi
    url: str
    server: uvicorn.Server
    ca_pem: bytes | None = None
    """The serving certificate (its own CA) when serving HTTPS."""

    def connection_sockets(self) -> list[socket.socket]:
        """The server side of every open HTTP connection."""
        out = []
        for protocol in self.server.server_state.connections:
            transport = getattr(protocol, "transport", None)
            if transport is not None:
                out.append(transport.get_extra_info("socket"))
        return out


@contextlib.asynccontextmanager
async def serving(
    api: FakeKubeApi | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    nodelay: bool = True,
    tls: bool = False,
) -> AsyncIterator[Serving]:
    """Serve an API (a new one by default) until the block ends; `tls`: HTTPS with a
    self-signed certificate (see `tls`)."""
    api = api or FakeKubeApi()
    sock = bind(host, port, nodelay=nodelay)
    bound = int(sock.getsockname()[1])
    with tempfile.TemporaryDirectory(prefix="arks-devcluster-") as tmp:
        certificate = self_signed(host) if tls else None
        cert = key = None
        if certificate is not None:
            cert, key = certificate.write(Path(tmp))
        config = uvicorn.Config(
            api.app, log_level="warning", lifespan="off", ssl_certfile=cert, ssl_keyfile=key
        )
        scheme = "https" if tls else "http"
        ca = certificate.cert_pem if certificate is not None else None
        async with _running(config, sock) as server:
            yield Serving(api, f"{scheme}://{host}:{bound}", server, ca)


@contextlib.asynccontextmanager
async def _running(config: uvicorn.Config, sock: socket.socket) -> AsyncIterator[uvicorn.Server]:
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="fake-kube-api")
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield server
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextlib.asynccontextmanager
async def serve(
    api: FakeKubeApi | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[tuple[FakeKubeApi, str]]:
    """Serve an API (a new one by default) until the block ends: (api, base URL)."""
    async with serving(api, host=host, port=port) as running:
        yield running.api, running.url
