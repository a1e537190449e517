"""The router's process: its lifespan (every client it owns) and its FastAPI app.

The lifespan connects NATS (creating streams and buckets if this service is first),
Redis/Valkey and the engine HTTP client, opens the usage spool, starts the KV
watchers, the load subscription, the usage publisher, the lease on this router's quota
reservations (`leasing`) and the journaling of open streams (`progress`), and serves
the app on `http.host:http.port`. `/readyz` stays false until all four KV buckets have been
loaded once. On the way out (after the HTTP server has finished its in-flight
requests) the usage still in memory is published or spooled before NATS is closed,
and the lease is given up.

Routes: `/livez`, `/readyz`, `/metrics` (arks_common.runtime), `GET /v1/models` and
`GET /v1/models/{model}`, and everything else goes to the proxy (`proxying.Proxy`).
Every response carries an `x-request-id`, which is also the usage event's id.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any, cast

import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from arks_common import access
from arks_common.messaging import Bus
from arks_common.runtime import HttpApp, Service, health_routes
from arks_router import api_errors, governing, leasing, upstreams, watching
from arks_router.accounting import Accountant
from arks_router.admitting import Admitter
from arks_router.authenticating import authenticate
from arks_router.catalog import Catalog
from arks_router.exchanges import REQUEST_ID_KEY, new_request_id
from arks_router.metrics import RouterMetrics
from arks_router.proxying import Proxy
from arks_router.publishing import UsagePublisher
from arks_router.routing.selecting import Fleet
from arks_router.settings import RouterSettings
from arks_router.spooling import Spool

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestIds:
    """Gives every request an id (in the scope) and every response its header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope[REQUEST_ID_KEY] = request_id
        stamp = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), stamp]
            await send(message)

        await self.app(scope, receive, send_with_id)


def _error_response(error: api_errors.ApiError) -> Response:
    response = Response(error.body(), status_code=error.status)
    response.headers.update(
        {k.decode("latin-1"): v.decode("latin-1") for k, v in error.response_headers()}
    )
    return response


def model_routes(catalog: Catalog, ready: Callable[[], bool]) -> list[Route]:
    """`GET /v1/models[/{model}]`: the endpoints the token may use, in its namespace."""

    def usable(request: Request) -> tuple[str, list[str]]:
        if not ready():
            raise api_errors.ApiError(
                503, "The router is not ready yet.", code="not_ready", type="server_error"
            )
        authorization = request.headers.get("authorization")
        token = authenticate(catalog, authorization.encode("latin-1") if authorization else None)
        names = sorted(
            grant.endpoint
            for grant in token.grants
            if catalog.endpoint(token.namespace, grant.endpoint) is not None
        )
        return token.namespace, names

    def model_object(name: str, namespace: str) -> dict[str, object]:
        return {"id": name, "object": "model", "created": 0, "owned_by": namespace}

    async def list_models(request: Request) -> Response:
        try:
            namespace, names = usable(request)
        except api_errors.ApiError as error:
            return _error_response(error)
        body = {"object": "list", "data": [model_object(n, namespace) for n in names]}
        return Response(orjson.dumps(body), media_type="application/json")

    async def get_model(request: Request) -> Response:
        model = request.path_params["model"]
        try:
            namespace, names = usable(request)
            if model not in names:
                raise api_errors.model_not_found(model)
        except api_errors.ApiError as error:
            return _error_response(error)
        return Response(orjson.dumps(model_object(model, namespace)), media_type="application/json")

    return [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", get_model, methods=["GET"]),
    ]


def create_app(
    service: Service, proxy: ASGIApp, catalog: Catalog, ready: Callable[[], bool]
) -> FastAPI:
    # FastAPI's own telemetry would add a second span and OTel metrics per request;
    # the proxy makes its own span (when tracing is configured) and Prometheus metrics.
    app = FastAPI(
        title="Arks router",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.router.routes.extend(health_routes(service))
    app.router.routes.extend(model_routes(catalog, ready))
    app.router.routes.append(Mount("", app=proxy))
    app.add_middleware(RequestIds)
    return app


@asynccontextmanager
async def lifespan(service: Service) -> AsyncIterator[HttpApp]:
    settings = cast(RouterSettings, service.settings)
    metrics = RouterMetrics(service.registry)
    catalog = Catalog()
    fleet = Fleet(settings.routing)
    service.health.require(*(watching.check_name(b) for b in watching.BUCKETS))

    def ready() -> bool:
        return service.health.ready

    bus = await Bus.connect(settings.nats, name="arks-router")
    redis_client = governing.connect(settings)
    session = upstreams.open_session(settings.upstream)
    publisher = UsagePublisher(bus, Spool(settings.usage.spool_dir), settings.usage, metrics)
    lease = leasing.Lease(redis_client, refresh_seconds=settings.governance.lease_refresh_seconds)
    try:
        await redis_client.verify(settings.redis)
        await bus.ensure_own_topology(access.ROUTER)
        await publisher.open()
        governor = governing.Governor(
            redis_client,
            settings,
            on_unavailable=metrics.governance_unavailable.inc,
            router_id=lease.router_id,
        )
        accountant = Accountant(
            governor, publisher, metrics, progress_interval=settings.usage.progress_interval
        )
        proxy = Proxy(
            settings,
            Admitter(settings, catalog, fleet, governor, ready),
            accountant,
            fleet,
            session,
            metrics,
        )
        for bucket in watching.BUCKETS:
            service.spawn(
                f"watch:{bucket}",
                watching.watch_bucket(bus, bucket, catalog, service.health, service.stop),
            )
        service.spawn(
            "loads",
            watching.follow_loads(bus, fleet, service.stop, metrics.load_snapshots.inc),
        )
        service.spawn("usage", publisher.run(service.stop))
        service.spawn("lease", lease.run(service.stop))
        service.spawn("progress", accountant.progress.run(service.stop))
        app = create_app(service, proxy, catalog, ready)
        yield HttpApp(app, settings.http.host, settings.http.port)
    finally:
        await publisher.close(settings.shutdown.drain_timeout)
        await lease.release()
        await session.close()
        await redis_client.close()
        await bus.close()
