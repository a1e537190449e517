"""The local platform's objects: the NATS KV resource store of `arks up`.

`LocalResources` is `ResourceStore` as the commands use it (`backends.Resources`), plus
the events `describe` shows: the object's `ResourceStatusChanged` history from the
`ARKS_RESOURCE_EVENTS` stream, read with a short-lived ephemeral consumer (the stream
keeps the last 50 per object; describe shows the last 20).
"""

from __future__ import annotations

import builtins
import contextlib
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from arks_cli.describing import EventLine
from arks_cli.manifests import Manifest
from arks_common import events, subjects
from arks_common.errors import PermanentError
from arks_common.messaging import Bus
from arks_common.resources import KindInfo
from arks_common.store import ResourceStore

Obj = dict[str, Any]
EVENT_LIMIT = 20
_FETCH_TIMEOUT = 0.5


class LocalResources:
    """`backends.Resources` over the local resource store."""

    def __init__(self, store: ResourceStore) -> None:
        self.store = store

    async def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        return await self.store.get(kind, namespace, name)

    async def list(self, kind: str, namespace: str | None) -> list[Obj]:
        return await self.store.list(kind, namespace)

    async def apply(self, manifest: Manifest) -> str:
        _, outcome = await self.store.apply(manifest.obj)
        return outcome

    async def create(self, obj: Obj) -> Obj:
        return await self.store.create(obj)

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        return await self.store.delete(kind, namespace, name)

    async def events(self, info: KindInfo, obj: Obj) -> builtins.list[EventLine]:
        meta = obj["metadata"]
        history = await recent_events(
            self.store.bus, info, meta.get("namespace", "default"), meta["name"]
        )
        return [
            EventLine(
                type=event.event_type,
                reason=event.reason or event.phase or "StatusChanged",
                at=event.occurred_at,
                message=event.message or (f"phase {event.phase}" if event.phase else ""),
            )
            for event in history
        ]


def _matches(event: events.ResourceStatusChanged, info: KindInfo) -> bool:
    return event.kind.lower() in {info.kind.lower(), info.plural, info.singular}


async def recent_events(
    bus: Bus, info: KindInfo, namespace: str, name: str, limit: int = EVENT_LIMIT
) -> list[events.ResourceStatusChanged]:
    """The object's last `limit` status events, oldest first ([] when there are none)."""
    # "*" for the kind token: producers may spell the kind as Kind or plural.
    subject = subjects.resource_status_subject("*", namespace, name)
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.NONE,
        inactive_threshold=30.0,
        mem_storage=True,
    )
    try:
        sub = await bus.js.pull_subscribe(
            subject, stream=subjects.RESOURCE_EVENTS_STREAM, config=config
        )
    except (nats.js.errors.NotFoundError, nats.errors.Error):
        return []
    found: list[events.ResourceStatusChanged] = []
    try:
        pending = (await sub.consumer_info()).num_pending or 0
        received = 0
        while received < pending:
            try:
                batch = await sub.fetch(min(pending - received, 256), timeout=_FETCH_TIMEOUT)
            except nats.errors.TimeoutError:
                break
            received += len(batch)
            for msg in batch:
                with contextlib.suppress(PermanentError):
                    event = events.decode_as(events.ResourceStatusChanged, msg.data)
                    if _matches(event, info):
                        found.append(event)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    found.sort(key=lambda e: e.occurred_at)
    return found[-limit:]
