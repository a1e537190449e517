"""Wiring: the accountant's clients and long-running tasks under `arks_common.runtime`.

Tasks (all stop with `service.stop`): follow quota specs from KV; the watchdog
(readiness and restore-on-data-loss); the hot-path NATS connection's keeper
(`arks_accountant.wire`: pings, reconnects); the ack-floor follower (prunes in-flight
markers); the consumer lanes (after the first spec
snapshot and the first restore check; `consumer.lanes` loops share the durable
consumer); exhaustion re-evaluation; the status loop; the sweeper.
`/readyz` is ready when NATS and Valkey are reachable, Valkey holds the ledger's epoch
and the durable consumer is bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import nats.errors

from arks_accountant.accounting import Accountant, Clock
from arks_accountant.consuming import consume_lane, ensure_consumer
from arks_accountant.evaluating import evaluate_forever
from arks_accountant.kube_status import KubernetesStatusWriter, api_client
from arks_accountant.local_status import LocalStatusWriter
from arks_accountant.metrics import Metrics
from arks_accountant.settings import AccountantSettings
from arks_accountant.specs import QuotaSpecs
from arks_accountant.status import StatusWriter
from arks_accountant.status_writing import StatusLoop
from arks_accountant.sweeping import sweep_forever
from arks_accountant.watching import CHECKS, CONSUMER_CHECK, watch_health
from arks_accountant.wire import Wire
from arks_common import access, subjects, valkey
from arks_common.errors import RetryableError
from arks_common.events import utcnow
from arks_common.messaging import Bus, ConsumerSpec
from arks_common.runtime import Lifespan, Service
from arks_common.store import ResourceStore

log = logging.getLogger(__name__)

NAME = "arks-accountant"


def consumer_spec(settings: AccountantSettings) -> ConsumerSpec:
    c = settings.consumer
    return ConsumerSpec(
        stream=subjects.USAGE_STREAM,
        durable=subjects.ACCOUNTANT_CONSUMER,
        filter_subject=subjects.USAGE_ALL,
        batch=c.batch,
        max_ack_pending=c.max_ack_pending,
        ack_wait=c.ack_wait,
        max_deliver=c.max_deliver,
        fetch_timeout=c.fetch_timeout,
    )


async def _wait(event: asyncio.Event, stop: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


async def consume(
    accountant: Accountant, bus: Bus, wire: Wire, settings: AccountantSettings, service: Service
) -> None:
    stop = service.stop
    await _wait(accountant.specs.loaded, stop)
    while not stop.is_set():
        try:
            await accountant.epoch()
            break
        except RetryableError as exc:
            log.warning("waiting for valkey and the ledger: %s", exc.message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    spec = consumer_spec(settings)
    while not stop.is_set():
        try:
            await ensure_consumer(bus, spec)
            break
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            log.warning("cannot bind consumer %s yet: %s", spec.durable, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    if stop.is_set():
        return
    service.health.set(CONSUMER_CHECK, True)
    async with asyncio.TaskGroup() as lanes:
        for index in range(settings.consumer.lanes):
            lane = accountant.lane(index)
            lanes.create_task(
                consume_lane(
                    wire,
                    bus,
                    spec,
                    accountant.handler(lane),
                    stop,
                    inbox=wire.new_inbox(),
                    on_acks_sent=lane.acks_sent,
                    batch_size=accountant.batch_size,
                )
            )


def make_lifespan(
    settings: AccountantSettings,
    *,
    clock: Clock = utcnow,
    status_writer: StatusWriter | None = None,
    hot_path: Callable[[Bus], Wire] | None = None,
) -> Lifespan:
    """The accountant's lifespan; `status_writer` overrides the one `settings` selects,
    `hot_path` the wire (the benchmark's baseline runs the hot path on nats-py's
    connection, `bench/nats_py_hot_path.py`)."""

    @contextlib.asynccontextmanager
    async def lifespan(service: Service) -> AsyncIterator[None]:
        metrics = Metrics.create(service.registry)
        service.health.require(*CHECKS)
        bus = await Bus.connect(settings.nats, name=f"{NAME}-{settings.instance_id}")
        wire = (
            hot_path(bus)
            if hot_path is not None
            else Wire(
                settings.nats.servers,
                name=f"{NAME}-{settings.instance_id}-wire",
                connect_timeout=settings.nats.connect_timeout,
                user=settings.nats.user,
                password=(
                    settings.nats.password.get_secret_value() if settings.nats.password else None
                ),
                inbox_prefix=settings.nats.inbox_prefix,
            )
        )
        try:
            await wire.connect(settings.nats.connect_deadline)
            await bus.ensure_own_topology(access.ACCOUNTANT)
            client = valkey.client(settings.redis)
            cleanup = contextlib.AsyncExitStack()
            try:
                await valkey.verify(client, settings.redis)
                specs = QuotaSpecs()
                accountant = Accountant(
                    bus=bus,
                    wire=wire,
                    redis=client,
                    settings=settings,
                    specs=specs,
                    metrics=metrics,
                    stop=service.stop,
                    clock=clock,
                )
                writer = status_writer
                if writer is None and settings.status.writer == "local":
                    writer = LocalStatusWriter(ResourceStore(bus))
                elif writer is None and settings.status.writer == "kubernetes":
                    kube = await cleanup.enter_async_context(await api_client(settings.kubernetes))
                    writer = KubernetesStatusWriter(
                        kube, timeout=settings.kubernetes.request_timeout
                    )
                stop = service.stop
                service.spawn("specs", specs.follow(bus, stop))
                service.spawn(
                    "watchdog",
                    watch_health(
                        accountant,
                        bus,
                        wire,
                        client,
                        service.health,
                        stop,
                        settings.ledger.watchdog_interval,
                    ),
                )
                service.spawn("wire", wire.run(stop))
                service.spawn("ack-floor", accountant.follow_ack_floor(stop))
                service.spawn("consume", consume(accountant, bus, wire, settings, service))
                service.spawn("evaluate", evaluate_forever(accountant, stop))
                service.spawn(
                    "status",
                    StatusLoop(accountant, writer, metrics).run(settings.status.interval, stop),
                )
                service.spawn("sweep", sweep_forever(accountant, settings.sweep, metrics, stop))
                yield None
            finally:
                await cleanup.aclose()
                await client.aclose()
        finally:
            await wire.close()
            await bus.close()

    return lifespan
