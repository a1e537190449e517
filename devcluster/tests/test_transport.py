"""The server's connections: accepted sockets have TCP_NODELAY, so a keep-alive response
is not held back by Nagle's algorithm waiting for the client's delayed ACK."""

from __future__ import annotations

import socket

import httpx

from arks_devcluster.server import serving


async def test_accepted_connections_have_tcp_nodelay():
    async with serving() as running, httpx.AsyncClient(base_url=running.url) as http:
        response = await http.get("/api/v1/namespaces/default/configmaps")
        assert response.status_code == 200
        sockets = running.connection_sockets()
        assert len(sockets) == 1
        assert sockets[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


async def test_the_baseline_variant_does_not_set_it():
    """The benchmark's "before" really is the old behaviour (a listening socket that does
    not name TCP)."""
    async with (
        serving(nodelay=False) as running,
        httpx.AsyncClient(base_url=running.url) as http,
    ):
        await http.get("/api/v1/namespaces/default/configmaps")
        sockets = running.connection_sockets()
        assert sockets[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
