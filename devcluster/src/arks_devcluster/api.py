"""`FakeKubeApi`: the dev cluster's API server as one object, for HTTP and in-process use.

It owns the resource-type table (`registry`), the objects (`store`), the open watches
(`watches`) and the Starlette `app` that serves them over HTTP. Code in the same process
(tests, the simulated controllers) may call `create`, `get` and `fail_next` directly, or
talk HTTP to the URL `serve()` gives, as any client would.

Failure injection for tests: `fail_next(status, count, method=...)` answers the next
requests with that status (a Status with the usual reason and "injected failure").
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from arks_common.resources import GROUP, KIND_INFO, VERSION
from arks_devcluster import rest
from arks_devcluster.errors import REASONS, ApiError, status_from
from arks_devcluster.registry import Registry
from arks_devcluster.resources import ResourceType, builtin_types
from arks_devcluster.store import Store
from arks_devcluster.watch import Watches

Obj = dict[str, Any]


def default_types() -> list[ResourceType]:
    """The six arks.ai kinds and the built-in types."""
    arks = [ResourceType(GROUP, VERSION, info.plural, info.kind) for info in KIND_INFO.values()]
    return arks + builtin_types()


class FakeKubeApi:
    """The objects, their history and the HTTP app serving them."""

    def __init__(self, types: Iterable[ResourceType] | None = None) -> None:
        self.registry = Registry(types if types is not None else default_types())
        self.store = Store(self.registry)
        self.watches = Watches(self.store)
        self._failures: list[tuple[int, str | None]] = []
        self.requests: list[tuple[str, str]] = []
        """(method, path) of every request, for tests."""
        self.app = Starlette(
            routes=[
                Route("/api/{version}/{rest:path}", self._handle, methods=rest.METHODS),
                Route("/apis/{group}/{version}/{rest:path}", self._handle, methods=rest.METHODS),
            ]
        )

    def register(self, rtype: ResourceType) -> None:
        self.registry.register(rtype)

    def fail_next(self, status: int, count: int = 1, *, method: str | None = None) -> None:
        """Answer the next `count` requests (of `method`, if given) with `status`
        (e.g. 409 to a PUT as if someone wrote the object first, 403, 429, 503)."""
        self._failures.extend([(status, method)] * count)

    # ------------------------------------------------------------------ direct access
    def get(self, api_version: str, plural: str, namespace: str, name: str) -> Obj | None:
        """A copy of an object, or None."""
        group, _, _ = api_version.rpartition("/")
        found = self.store.find(self.registry.resource(group, plural), namespace, name)
        return copy.deepcopy(found) if found is not None else None

    def create(self, obj: Obj) -> Obj:
        """Create an object as a client would (status kept: a test may seed it)."""
        rtype = self.registry.by_kind(obj["apiVersion"], obj["kind"])
        namespace = obj.get("metadata", {}).get("namespace", "default")
        created = self.store.create(rtype, namespace, copy.deepcopy(obj), keep_status=True)
        return copy.deepcopy(created)

    # ------------------------------------------------------------------ HTTP
    def _injected(self, method: str) -> Response | None:
        for index, (code, wanted) in enumerate(self._failures):
            if wanted is None or wanted == method:
                del self._failures[index]
                reason = REASONS.get(code, "InternalError")
                return JSONResponse(status_from(code, reason, "injected failure"), code)
        return None

    async def _handle(self, request: Request) -> Response:
        self.requests.append((request.method, request.url.path))
        injected = self._injected(request.method)
        if injected is not None:
            return injected
        try:
            return await rest.handle(self, request)
        except ApiError as exc:
            return exc.response()
