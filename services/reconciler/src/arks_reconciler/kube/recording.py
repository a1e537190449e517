"""Kubernetes Events about arks.ai objects: what `kubectl describe` lists under Events.

`EventRecorder.record(...)` never blocks a reconcile: it puts the event on a bounded
queue and returns; when the queue is full the event is dropped (counted in `dropped`,
logged once per burst). `run(stop)` sends the queue to the API and, after `stop`, what is
still queued for a moment more.

Events are core/v1 Events (the kind `kubectl describe` reads), named
`<involved name>.<16 hex digits>` in the involved object's namespace, with
`involvedObject`, `reason` (at most 128 characters), `message` (at most 1024),
`type` (Normal or Warning), `source.component`/`host`, `reportingComponent`,
`reportingInstance`, `firstTimestamp`, `lastTimestamp` (UTC, seconds) and `count`.

Repeats aggregate as client-go's recorder does: the same (involved object, type, reason,
message) within ten minutes of its last occurrence PATCHes `count` and `lastTimestamp`
of the Event already written instead of creating another one (an Event gone meanwhile is
written anew). The recorder remembers the last `cache_size` such keys (LRU).

Events are best effort: a failed write is logged and dropped. A refusal (401/403) is
logged once, as an error naming the RBAC to grant (create and patch on events).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from arks_common.errors import ArksError
from arks_common.kubeapi import MERGE_PATCH, KubeApi
from arks_common.store import NotFoundError

log = logging.getLogger(__name__)

Obj = dict[str, Any]
EventType = Literal["Normal", "Warning"]

MAX_MESSAGE: Final = 1024
MAX_REASON: Final = 128
MAX_NAME: Final = 253
AGGREGATION_WINDOW: Final = timedelta(minutes=10)

RBAC: Final = "create and patch on events (core API group)"


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_time(at: datetime) -> str:
    """A Kubernetes Time: UTC, whole seconds, `Z`."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class _Pending:
    involved: Obj
    type: EventType
    reason: str
    message: str
    at: datetime

    @property
    def namespace(self) -> str:
        return str(self.involved.get("namespace") or "default")

    @property
    def key(self) -> tuple[str, ...]:
        who = self.involved.get("uid") or "/".join(
            str(self.involved.get(k) or "") for k in ("kind", "namespace", "name")
        )
        return (str(who), self.type, self.reason, self.message)


@dataclass
class _Written:
    name: str
    namespace: str
    count: int
    last: datetime


class _Gone(Exception):
    """404: the Event to aggregate into is gone."""


class _Failed(Exception):
    """A write failed; the event is dropped."""


class EventRecorder:
    """Queues Events about arks.ai objects and writes them (see the module docstring)."""

    def __init__(
        self,
        kube: KubeApi,
        *,
        component: str = "arks-reconciler",
        host: str | None = None,
        queue_size: int = 1000,
        cache_size: int = 4096,
        timeout: float = 10.0,
        flush_timeout: float = 2.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.component = component
        self.host = host or socket.gethostname()
        self.dropped = 0
        """Events dropped because the queue was full."""
        self.failed = 0
        """Events whose write failed."""
        self._kube = kube
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(queue_size)
        self._written: OrderedDict[tuple[str, ...], _Written] = OrderedDict()
        self._cache_size = cache_size
        self._timeout = timeout
        self._flush_timeout = flush_timeout
        self._clock = clock
        self._last_stamp = 0
        self._refused = False
        self._last_failure: str | None = None
        self._dropping = False

    def record(self, involved: Obj, type: EventType, reason: str, message: str) -> None:
        """Queue an Event about `involved` (an object as the API has it); never blocks."""
        meta = involved.get("metadata") or {}
        reference = {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        }
        pending = _Pending(
            {k: v for k, v in reference.items() if v},
            type,
            reason[:MAX_REASON],
            message[:MAX_MESSAGE],
            self._clock(),
        )
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            self.dropped += 1
            if not self._dropping:
                log.warning(
                    "event queue full (%d): dropping events (%s %s of %s %s) until it drains",
                    self._queue.maxsize,
                    type,
                    reason,
                    reference["kind"],
                    reference["name"],
                )
                self._dropping = True
            return
        self._dropping = False

    async def run(self, stop: asyncio.Event) -> None:
        """Write queued events until `stop`, then what is left for `flush_timeout`."""
        while (pending := await self._next(stop)) is not None:
            await self._write(pending)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._flush_timeout):
                while not self._queue.empty():
                    await self._write(self._queue.get_nowait())
        if not self._queue.empty():
            log.info("%d events left unwritten at shutdown", self._queue.qsize())

    async def _next(self, stop: asyncio.Event) -> _Pending | None:
        if not self._queue.empty():
            return self._queue.get_nowait()
        getter = asyncio.ensure_future(self._queue.get())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([getter, stopper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not getter.done():
                getter.cancel()
        return getter.result() if getter.done() and not getter.cancelled() else None

    # ------------------------------------------------------------------ writing
    async def _write(self, pending: _Pending) -> None:
        try:
            if not await self._aggregate(pending):
                await self._create(pending)
        except _Failed as exc:
            self.failed += 1
            quiet = str(exc) == self._last_failure
            log.log(
                logging.DEBUG if quiet else logging.WARNING,
                "event %s of %s %s dropped: %s",
                pending.reason,
                pending.involved.get("kind"),
                pending.involved.get("name"),
                exc,
            )
            self._last_failure = str(exc)
        else:
            self._last_failure = None

    async def _aggregate(self, pending: _Pending) -> bool:
        """Count `pending` into the Event written for the same key; False if none."""
        written = self._written.get(pending.key)
        if written is None or pending.at - written.last > AGGREGATION_WINDOW:
            return False
        patch = {"count": written.count + 1, "lastTimestamp": format_time(pending.at)}
        path = f"/api/v1/namespaces/{written.namespace}/events/{written.name}"
        try:
            await self._request("PATCH", path, patch, content_type=MERGE_PATCH)
        except _Gone:
            del self._written[pending.key]
            return False
        written.count += 1
        written.last = pending.at
        self._written.move_to_end(pending.key)
        return True

    async def _create(self, pending: _Pending) -> None:
        stamp = format_time(pending.at)
        name = f"{str(pending.involved.get('name') or 'event')[: MAX_NAME - 17]}.{self._hex()}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": pending.namespace},
            "involvedObject": pending.involved,
            "reason": pending.reason,
            "message": pending.message,
            "type": pending.type,
            "source": {"component": self.component, "host": self.host},
            "reportingComponent": self.component,
            "reportingInstance": self.host,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await self._request("POST", f"/api/v1/namespaces/{pending.namespace}/events", body)
        except _Gone as exc:  # the namespace is gone: nothing to describe any more
            raise _Failed(f"namespace {pending.namespace} not found") from exc
        self._written[pending.key] = _Written(name, pending.namespace, 1, pending.at)
        self._written.move_to_end(pending.key)
        while len(self._written) > self._cache_size:
            self._written.popitem(last=False)

    def _hex(self) -> str:
        """16 hex digits of the time in nanoseconds, unique within this recorder."""
        self._last_stamp = max(time.time_ns(), self._last_stamp + 1)
        return f"{self._last_stamp:016x}"

    async def _request(
        self, method: str, path: str, body: Obj, *, content_type: str = "application/json"
    ) -> None:
        try:
            await self._kube.request(
                method,
                path,
                body=body,
                content_type=content_type,
                where="an Event",
                seconds=self._timeout,
            )
        except NotFoundError as exc:
            raise _Gone from exc
        except ArksError as exc:
            if exc.reason == "Forbidden":
                if not self._refused:
                    log.error(
                        "the Kubernetes API refused to write events (%s): grant the "
                        "reconciler's service account %s; events are dropped until then",
                        exc.message,
                        RBAC,
                    )
                    self._refused = True
                    self._last_failure = "refused"
                raise _Failed("refused") from exc
            raise _Failed(exc.message) from exc
        self._refused = False
