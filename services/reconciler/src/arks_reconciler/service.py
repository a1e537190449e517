"""The reconciler service: connect, recover, then reconcile until SIGTERM.

`ARKS_PLATFORM` chooses where workloads run: `local` (processes on this machine, the
NATS KV store as API) or `kubernetes` (the cluster of `ARKS_KUBERNETES__*`; see
`arks_reconciler.kube`).

Start-up order matters: the platform first recovers what a previous run left (the local
platform adopts running replicas), and only then does the first reconcile run, so a
restart never starts a duplicate replica. `/readyz` is ready once NATS is connected and,
on the replica that leads, the first full snapshot of resources has been queued (a
standby is ready while it waits for the Lease).

Shutdown: SIGTERM sets `service.stop`; the queue lets running reconciles finish, the
platform stops supervising (replicas keep running unless `local.stop_on_exit`), and the
NATS connection is drained last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import cast

import httpx

from arks_common import access, kubeapi
from arks_common.messaging import Bus
from arks_common.runtime import Service, until_set
from arks_common.store import ResourceStore
from arks_reconciler import scraping
from arks_reconciler.kube.electing import LeaseElector, identity, lease_namespace
from arks_reconciler.kube.metrics import KubeCollector
from arks_reconciler.kube.platform import KubernetesPlatform
from arks_reconciler.kube.recording import EventRecorder
from arks_reconciler.leading import Leadership
from arks_reconciler.local.platform import LocalPlatform
from arks_reconciler.metrics import ReconcilerCollector
from arks_reconciler.platform import Platform
from arks_reconciler.reconciling import Reconciler
from arks_reconciler.settings import ReconcilerSettings

log = logging.getLogger(__name__)
STANDING_BY_OR_SYNCED = "standby-or-synced"
"""The readiness check: a standby, or the leader after its first full snapshot."""


async def build_platform(
    settings: ReconcilerSettings,
    bus: Bus,
    client: httpx.AsyncClient,
    stack: contextlib.AsyncExitStack,
) -> Platform:
    """The platform `settings.platform` names; its clients close with `stack`."""
    if settings.platform == "local":
        return LocalPlatform(settings.local, bus, ResourceStore(bus), client)
    kube_settings = settings.kubernetes
    api = await kubeapi.api_client(kube_settings, otherwise="or ARKS_PLATFORM=local")
    stack.push_async_callback(api.close)
    kube = kubeapi.KubeApi(api, timeout=kube_settings.request_timeout)
    elector = LeaseElector(
        kube,
        kube_settings.lease,
        namespace=lease_namespace(kube_settings.lease),
        identity=identity(kube_settings.lease),
    )
    return KubernetesPlatform(kube_settings, kube, leadership=elector, recorder=EventRecorder(kube))


async def _track_readiness(service: Service, reconciler: Reconciler) -> None:
    """`/readyz`: a standby is ready (it has nothing to list and waits for the Lease, and
    a rollout or a drain must not wait for it to lead); the leader once its first full
    snapshot is queued."""
    leadership = reconciler.platform.leadership
    service.health.set(STANDING_BY_OR_SYNCED, True)
    if not await until_set(leadership.leading, service.stop):
        return
    service.health.set(STANDING_BY_OR_SYNCED, reconciler.synced.is_set())
    if await until_set(reconciler.synced, service.stop):
        service.health.set(STANDING_BY_OR_SYNCED, True)


async def _scrape_while_leading(
    leadership: Leadership, scraper: scraping.LoadScraper, stop: asyncio.Event
) -> None:
    if await until_set(leadership.leading, stop):
        await scraper.run(stop)


@contextlib.asynccontextmanager
async def lifespan(service: Service) -> AsyncIterator[None]:
    settings = cast(ReconcilerSettings, service.settings)
    service.health.require("nats", STANDING_BY_OR_SYNCED)
    bus = await Bus.connect(settings.nats, name=service.name)
    try:
        await bus.ensure_own_topology(access.RECONCILER)
        service.health.set("nats", True)
        async with (
            httpx.AsyncClient(trust_env=False, timeout=5.0) as client,
            contextlib.AsyncExitStack() as stack,
        ):
            platform = await build_platform(settings, bus, client, stack)
            await platform.start()
            reconciler = Reconciler(platform, bus, settings.queue)
            service.registry.register(ReconcilerCollector(reconciler))
            if isinstance(platform, KubernetesPlatform):
                service.registry.register(KubeCollector(platform))
            service.spawn("reconcile", reconciler.run(service.stop))
            service.spawn("readiness", _track_readiness(service, reconciler))
            if settings.scrape.enabled:
                scrape_client = await stack.enter_async_context(scraping.session())
                scraper = scraping.LoadScraper(
                    bus,
                    scrape_client,
                    reconciler.scrape_targets,
                    interval=settings.scrape.interval,
                    timeout=settings.scrape.timeout,
                )
                service.spawn(
                    "scrape", _scrape_while_leading(platform.leadership, scraper, service.stop)
                )
            log.info("reconciling on the %s platform", platform.name)
            yield None
    finally:
        await bus.close()
