"""`GET /v1/models` and `GET /v1/models/{model}`, answered by the router itself.

A token sees the endpoints it may use: granted to it **and** existing in its own
namespace (other namespaces are invisible; a granted name that does not exist is not
listed). `created` is the ArksEndpoint's creation time (`RouteTable.created_at`; 0 for
a route table published by a reconciler that did not carry it), `owned_by` its
namespace. Engines' own `/v1/models` (which may show local paths and engine settings)
is never forwarded. Errors: 503 `not_ready`, 401, 404 `model_not_found`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from arks_router import api_errors
from arks_router.admitting import not_ready
from arks_router.authenticating import authenticate
from arks_router.catalog import Catalog, Endpoint
from arks_router.exchanges import header
from arks_router.surface import MODELS_PREFIX

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]


def model_object(endpoint: Endpoint) -> dict[str, object]:
    return {
        "id": endpoint.name,
        "object": "model",
        "created": endpoint.created,
        "owned_by": endpoint.table.namespace,
    }


class Models:
    """The ASGI app of the two model routes (`surface` sends only those here)."""

    def __init__(self, catalog: Catalog, ready: Callable[[], bool]) -> None:
        self._catalog = catalog
        self._ready = ready

    def usable(self, scope: Scope) -> list[Endpoint]:
        if not self._ready():
            raise not_ready()
        token = authenticate(self._catalog, header(scope["headers"], b"authorization"))
        found = (self._catalog.endpoint(token.namespace, grant.endpoint) for grant in token.grants)
        return sorted((e for e in found if e is not None), key=lambda e: e.name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        try:
            endpoints = self.usable(scope)
            if path.startswith(MODELS_PREFIX):
                wanted = path[len(MODELS_PREFIX) :]
                chosen = next((e for e in endpoints if e.name == wanted), None)
                if chosen is None:
                    raise api_errors.model_not_found(wanted)
                body = orjson.dumps(model_object(chosen))
            else:
                listed = [model_object(e) for e in endpoints]
                body = orjson.dumps({"object": "list", "data": listed})
        except api_errors.ApiError as error:
            await api_errors.send(send, error)
            return
        headers = [*_JSON, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
