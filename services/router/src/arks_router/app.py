"""The router's process: its lifespan (every client it owns) and its API app.

The lifespan connects NATS (creating streams and buckets if this service is first),
Redis/Valkey and the engine HTTP client, opens the usage spool, starts the KV
watchers, the load subscription, the usage publisher, the lease on this router's quota
reservations (`leasing`) and the journaling of open streams (`progress`), and serves
the API on `http.host:http.port`. The runtime serves `/livez`, `/readyz` and `/metrics`
on the admin port (`health.host:health.port`), never on the API port. `/readyz` stays
false until all four KV buckets have been loaded once. On the way out (after the HTTP
server has finished its in-flight requests) the usage still in memory is published or
spooled before NATS is closed, and the lease is given up.

The API app is `surface.Gate` (normal-form paths, known routes and methods only), which
hands `GET /v1/models[/{model}]` to `listing.Models` and the inference routes to the
proxy (`proxying.Proxy`). Every response carries an `x-request-id`, which is also the
usage event's id. Requests uvicorn cannot parse get an OpenAI-shaped 400
(`malformed`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any, cast

from arks_common import access
from arks_common.messaging import Bus
from arks_common.runtime import HttpApp, Service
from arks_router import governing, leasing, upstreams, watching
from arks_router.accounting import Accountant
from arks_router.admitting import Admitter
from arks_router.catalog import Catalog
from arks_router.exchanges import REQUEST_ID_KEY, new_request_id
from arks_router.listing import Models
from arks_router.malformed import OpenAIErrorsHttpProtocol
from arks_router.metrics import RouterMetrics
from arks_router.proxying import Proxy
from arks_router.publishing import UsagePublisher
from arks_router.routing.selecting import Fleet
from arks_router.settings import RouterSettings
from arks_router.spooling import Spool
from arks_router.surface import Gate

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


def create_app(
    proxy: ASGIApp, catalog: Catalog, ready: Callable[[], bool], metrics: RouterMetrics
) -> ASGIApp:
    return RequestIds(Gate(proxy, Models(catalog, ready), metrics))


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
        app = create_app(proxy, catalog, ready, metrics)
        yield HttpApp(
            app, settings.http.host, settings.http.port, protocol=OpenAIErrorsHttpProtocol
        )
    finally:
        await publisher.close(settings.shutdown.drain_timeout)
        await lease.release()
        await session.close()
        await redis_client.close()
        await bus.close()
