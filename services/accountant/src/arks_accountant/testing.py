"""Test and benchmark support: run an accountant in-process, publish usage, wait, read totals."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis
from nats.js.api import AckPolicy, ConsumerConfig

from arks_accountant.accounting import Accountant, Clock
from arks_accountant.deliveries import Delivery
from arks_accountant.metrics import Metrics
from arks_accountant.service import consumer_spec, make_lifespan
from arks_accountant.settings import (
    AccountantSettings,
    ConsumerSettings,
    LedgerSettings,
    StatusSettings,
    SweepSettings,
)
from arks_accountant.specs import QuotaSpecs
from arks_accountant.status import StatusWriter
from arks_accountant.wire import Wire
from arks_common import events, ledger, subjects, telemetry
from arks_common.messaging import Bus, KvSnapshot
from arks_common.runtime import Service, run_until_stopped
from arks_common.settings import (
    HealthSettings,
    NatsSettings,
    RedisSettings,
    ShutdownSettings,
)
from arks_common.testing.builders import make_quota_spec


def make_settings(nats_url: str, redis_url: str, **overrides: object) -> AccountantSettings:
    values: dict[str, object] = {
        "nats": NatsSettings(url=nats_url, connect_deadline=10, request_timeout=2),
        "redis": RedisSettings(url=redis_url, socket_timeout=1),
        "health": HealthSettings(port=0),
        "shutdown": ShutdownSettings(drain_timeout=3),
        "consumer": ConsumerSettings(batch=100, ack_wait=5, fetch_timeout=0.2),
        "status": StatusSettings(writer="none", interval=0.2),
        "sweep": SweepSettings(interval=0.2),
        "ledger": LedgerSettings(watchdog_interval=0.1),
        "publish_timeout": 3,
    }
    values.update(overrides)
    return AccountantSettings.model_validate(values)


class FakeClock:
    """A settable UTC clock."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


@dataclass
class Running:
    service: Service
    stop: asyncio.Event
    task: asyncio.Task[None]

    def metric(self, name: str, **labels: str) -> float:
        value = self.service.registry.get_sample_value(name, labels or None)
        return value or 0.0


@contextlib.asynccontextmanager
async def running_accountant(
    settings: AccountantSettings,
    *,
    clock: Clock | None = None,
    status_writer: StatusWriter | None = None,
    ready: bool = True,
) -> AsyncIterator[Running]:
    stop = asyncio.Event()
    started: asyncio.Future[Service] = asyncio.get_running_loop().create_future()
    lifespan = make_lifespan(
        settings, clock=clock or (lambda: datetime.now(UTC)), status_writer=status_writer
    )
    task = asyncio.create_task(
        run_until_stopped(
            "arks-accountant", settings, lifespan, stop, on_started=started.set_result
        ),
        name="test-accountant",
    )
    try:
        service = await asyncio.wait_for(asyncio.shield(started), 20)
        running = Running(service, stop, task)
        if ready:
            await wait_for(lambda: service.health.ready, within=20, what="accountant ready")
        yield running
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    within: float = 15,
    what: str = "",
    interval: float = 0.05,
) -> None:
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(interval)


async def publish_usage(bus: Bus, *usage: events.UsageRecorded, msg_id: str | None = None) -> None:
    for event in usage:
        headers = {events.MSG_ID_HEADER: msg_id} if msg_id else None
        await bus.publish(
            subjects.usage_subject(event.namespace, event.endpoint), event, headers=headers
        )


async def put_spec(bus: Bus, spec: events.QuotaSpec) -> None:
    kv = await bus.kv(subjects.QUOTAS_BUCKET)
    await kv.put(subjects.namespaced_key(spec.namespace, spec.name), spec.to_bytes())


async def used(
    redis: aioredis.Redis, namespace: str, quota: str, period: str = "lifetime"
) -> dict[str, int]:
    out = {}
    for kind in ledger.QuotaKind:
        raw = await redis.get(ledger.used_key(namespace, quota, period, kind))
        out[kind.value] = int(raw or 0)
    return out


def expected_used(usage: list[events.UsageRecorded]) -> dict[str, int]:
    return {
        "prompt": sum(e.prompt_tokens for e in usage),
        "response": sum(e.completion_tokens for e in usage),
        "total": sum(e.prompt_tokens + e.completion_tokens for e in usage),
    }


@contextlib.asynccontextmanager
async def standalone_accountant(
    bus: Bus,
    redis: aioredis.Redis,
    settings: AccountantSettings,
    *,
    specs: list[events.QuotaSpec] | None = None,
    clock: Clock | None = None,
) -> AsyncIterator[Accountant]:
    """An Accountant without the service around it: the test feeds it batches itself."""
    quota_specs = QuotaSpecs()
    quota_specs.apply(
        KvSnapshot(
            {subjects.namespaced_key(s.namespace, s.name): s.to_bytes() for s in specs or []}
        )
    )
    stop = asyncio.Event()
    wire = Wire(settings.nats.servers, name="standalone-accountant")
    await wire.connect(settings.nats.connect_deadline)
    accountant = Accountant(
        bus=bus,
        wire=wire,
        redis=redis,
        settings=settings,
        specs=quota_specs,
        metrics=Metrics.create(telemetry.new_registry()),
        stop=stop,
        clock=clock or (lambda: datetime.now(UTC)),
    )
    try:
        await accountant.epoch()
        yield accountant
    finally:
        stop.set()
        await wire.close()


@contextlib.asynccontextmanager
async def connected_wire(nats_url: str, *, ping_interval: float = 10.0) -> AsyncIterator[Wire]:
    """A hot-path connection to `nats_url`, kept (reconnected) until the block ends."""
    wire = Wire([nats_url], name="test-wire", ping_interval=ping_interval)
    await wire.connect(10)
    stop = asyncio.Event()
    keeper = asyncio.create_task(wire.run(stop), name="test-wire-keeper")
    try:
        yield wire
    finally:
        stop.set()
        await keeper
        await wire.close()


async def fetch_unacked(bus: Bus, settings: AccountantSettings, count: int) -> list[Delivery]:
    """Fetch messages through the accountant's durable consumer without acking them."""
    spec = consumer_spec(settings)
    sub = await bus.js.pull_subscribe(
        spec.filter_subject,
        durable=spec.durable,
        stream=spec.stream,
        config=ConsumerConfig(
            durable_name=spec.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=spec.ack_wait,
            max_deliver=spec.max_deliver,
            max_ack_pending=spec.max_ack_pending,
            filter_subject=spec.filter_subject,
        ),
    )
    try:
        got: list[Delivery] = []
        while len(got) < count:
            got.extend(Delivery.of(m) for m in await sub.fetch(count - len(got), timeout=5))
        return got
    finally:
        await sub.unsubscribe()


async def stream_messages(bus: Bus, stream: str) -> int:
    info = await bus.js.stream_info(stream)
    return int(info.state.messages)


def status_quota() -> tuple[dict[str, Any], events.QuotaSpec]:
    """An ArksQuota `default/basic-quota` (prompt and total limits, a 10 USD budget, prices
    for qwen-7b) and the QuotaSpec the reconciler publishes for it: for status tests."""
    obj: dict[str, Any] = {
        "apiVersion": "arks.ai/v1",
        "kind": "ArksQuota",
        "metadata": {"name": "basic-quota", "namespace": "default"},
        "spec": {
            "quotas": [{"type": "prompt", "value": 1000}, {"type": "total", "value": 5000}],
            "budget": {"limit": "10"},
            "prices": [{"endpoint": "qwen-7b", "prompt": "2", "completion": "4"}],
        },
    }
    spec = make_quota_spec(
        limits=[
            events.QuotaLimit(type="prompt", value=1000),
            events.QuotaLimit(type="total", value=5000),
        ],
        budget_nanos=10 * ledger.NANOS_PER_UNIT,
        prices=[events.EndpointPrice(endpoint="qwen-7b", prompt=Decimal(2), completion=Decimal(4))],
    )
    return obj, spec
