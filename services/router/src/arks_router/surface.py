"""The router's public API surface: the routes it serves, and the gate in front of them.

Every request passes the gate first, before authentication, before its body is read
and before anything is charged:

1. Its path, exactly as sent (`raw_path`), must be in normal form: no percent-encoding
   (`%2e%2e`, `..%2f`, `%2f`, `%63`...), no `.` or `..` segments, no repeated `/`.
   Otherwise 400 `invalid_path`. Normalising and forwarding instead would let a path
   that *looks* like `/v1/chat/completions/...` reach whatever an engine resolves it
   to (`/version`, `/metrics`, admin routes), so it is refused whole; clients and SDKs
   never send such paths.
2. The path must be one of `ROUTES` (exact, so a trailing-slash variant is not):
   otherwise 404 `unknown_route`, naming the method and path.
3. The method must be one the route accepts: otherwise 405 `method_not_allowed` with
   an `Allow` header.

Only these inference routes are ever forwarded to engines (and then only when the
endpoint's matchConfigs match, see `matching`); `/v1/models` is answered by the
router itself. Health and metrics are on the admin port, not here. Refusals are
counted in `arks_router_rejections_total` (reason `path` or `route`) and publish no
usage.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from arks_router import api_errors
from arks_router.estimating import ApiKind
from arks_router.exchanges import API_KIND_KEY
from arks_router.metrics import RouterMetrics

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Route:
    path: str
    methods: tuple[str, ...]
    kind: ApiKind | None
    """The inference API forwarded to engines; None: answered by the router itself."""


ROUTES: dict[str, Route] = {
    route.path: route
    for route in (
        Route("/v1/chat/completions", ("POST",), ApiKind.CHAT),
        Route("/v1/completions", ("POST",), ApiKind.COMPLETIONS),
        Route("/v1/embeddings", ("POST",), ApiKind.EMBEDDINGS),
        Route("/v1/responses", ("POST",), ApiKind.RESPONSES),
        Route("/v1/models", ("GET",), None),
    )
}
MODEL_ROUTE = Route("/v1/models/{model}", ("GET",), None)
MODELS_PREFIX = "/v1/models/"

_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
_SLASHES = re.compile(r"/{2,}")


def normal_form(raw: bytes) -> str | None:
    """The path percent-decoded (all of it, `%2F` included), with runs of `/` collapsed
    and dot segments removed (RFC 3986 5.2.4); None when it cannot be a path at all
    (not ASCII, not UTF-8 once decoded, control characters, not absolute)."""
    try:
        path = urllib.parse.unquote(raw.decode("ascii"), errors="strict")
    except UnicodeDecodeError:
        return None
    if not path.startswith("/") or _UNSAFE.search(path):
        return None
    segments = _SLASHES.sub("/", path).split("/")[1:]
    kept: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment in (".", ".."):
            if segment == ".." and kept:
                kept.pop()
            if last:
                kept.append("")  # "/a/.." is "/": the result still names a directory
        else:
            kept.append(segment)
    return "/" + "/".join(kept)


def lookup(path: str) -> Route | None:
    """The route of a normal-form path, if the router serves it."""
    route = ROUTES.get(path)
    if route is not None:
        return route
    if path.startswith(MODELS_PREFIX):
        model = path[len(MODELS_PREFIX) :]
        if model and "/" not in model:
            return MODEL_ROUTE
    return None


def check(method: str, raw_path: bytes) -> Route:
    """The route a request may take, or the ApiError that refuses it."""
    normal = normal_form(raw_path)
    if normal is None or normal.encode() != raw_path:
        raise api_errors.invalid_path()
    route = lookup(normal)
    if route is None:
        raise api_errors.unknown_route(method, normal)
    if method not in route.methods:
        raise api_errors.method_not_allowed(method, normal, route.methods)
    return route


class Gate:
    """The API app: refuses what no route serves, hands the rest to its handler."""

    def __init__(self, proxy: ASGIApp, models: ASGIApp, metrics: RouterMetrics) -> None:
        self._proxy = proxy
        self._models = models
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw_path = scope.get("raw_path") or urllib.parse.quote(scope["path"]).encode()
        try:
            route = check(scope["method"], raw_path)
        except api_errors.ApiError as error:
            reason = "path" if error.status == 400 else "route"
            self._metrics.rejections.labels("", reason, "").inc()
            self._metrics.requests.labels("", "", str(error.status)).inc()
            await api_errors.send(send, error)
            return
        scope[API_KIND_KEY] = route.kind
        if route.kind is None:
            await self._models(scope, receive, send)
        else:
            await self._proxy(scope, receive, send)
