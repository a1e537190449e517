"""The reconcile loop every simulated controller runs: an informer and a work queue.

`Controller.run()` subscribes to the changes of its primary kind, of the kinds it owns
and of CustomResourceDefinitions, then lists its primary objects and queues each one by
(namespace, name). A change to an owned object queues its controller (the owner named by
the controller ownerReference, or what `keys_for` says); a CRD change re-queues every
primary object, so a controller of a custom kind starts working the moment its CRD is
installed and finds nothing to do once it is removed (lists of an unserved kind are
empty). One key is reconciled at a time and never twice at once; a key queued again
while it waits is queued once.

Failure modes: `reconcile` raising a 409 or 404 `ApiError` (a stale read, an object gone
under it) is retried soon; any other exception is logged with the key and retried with
exponential backoff (10 ms doubling to 10 s), never ending the loop. `reconcile` returns
the seconds after which it wants to look again (minReadySeconds, deadlines, TTLs) or None.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import TYPE_CHECKING

from arks_devcluster.errors import ApiError
from arks_devcluster.local_client import LocalClient
from arks_devcluster.store import Event

if TYPE_CHECKING:
    from arks_devcluster.api import FakeKubeApi

log = logging.getLogger(__name__)

Key = tuple[str, str]
Kind = tuple[str, str]
CRDS: Kind = ("apiextensions.k8s.io", "customresourcedefinitions")
BASE_DELAY = 0.01
MAX_DELAY = 10.0


class WorkQueue:
    """Keys due at a time (the loop's clock); `get` waits for the earliest due one."""

    def __init__(self) -> None:
        self._due: dict[Key, float] = {}
        self._failures: dict[Key, int] = {}
        self._wake = asyncio.Event()

    def add(self, key: Key, after: float = 0.0) -> None:
        due: float = asyncio.get_running_loop().time() + max(after, 0.0)
        self._due[key] = min(self._due.get(key, due), due)
        self._wake.set()

    def retry(self, key: Key) -> float:
        """Queue a key again after its backoff; the delay is returned (for logs)."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = min(BASE_DELAY * 2.0**failures, MAX_DELAY)
        self.add(key, delay)
        return delay

    def forget(self, key: Key) -> None:
        self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._due)

    async def get(self) -> Key:
        loop = asyncio.get_running_loop()
        while True:
            timeout: float | None = None
            if self._due:
                key, due = min(self._due.items(), key=lambda item: item[1])
                timeout = due - loop.time()
                if timeout <= 0:
                    del self._due[key]
                    return key
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)


class Controller(ABC):
    """One controller: a primary kind, the kinds whose changes concern it, a reconcile."""

    primary: Kind
    owns: tuple[Kind, ...] = ()
    manager = "kube-controller-manager"
    component = "controller"

    def __init__(self, api: FakeKubeApi) -> None:
        self.api = api
        self.client = LocalClient(api, manager=self.manager, component=self.component)
        self.queue = WorkQueue()

    @abstractmethod
    def reconcile(self, namespace: str, name: str) -> float | None:
        """Bring the world in line with one primary object; seconds to look again, or
        None. Raise to retry with backoff."""

    def keys_for(self, event: Event) -> Iterable[Key]:
        """The primary objects a change concerns: the object itself, or the controller
        owner of an owned object when it is of the primary kind."""
        meta = event.obj["metadata"]
        namespace = meta.get("namespace", "")
        if (event.rtype.group, event.rtype.plural) == self.primary:
            return [(namespace, meta["name"])]
        kind = self._primary_kind()
        return [
            (namespace, ref["name"])
            for ref in meta.get("ownerReferences") or []
            if ref.get("controller") and ref.get("kind") == kind
        ]

    def _primary_kind(self) -> str | None:
        try:
            return self.client.rtype(*self.primary).kind
        except KeyError:
            return None

    def requeue_all(self) -> None:
        for obj in self.client.list(*self.primary):
            self.queue.add((obj["metadata"].get("namespace", ""), obj["metadata"]["name"]))

    async def run(self) -> None:
        """Run until cancelled."""
        with self.client.subscribe(self.primary, *self.owns, CRDS) as changes:
            self.requeue_all()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._pump(changes))
                tasks.create_task(self._work())

    async def _pump(self, changes: asyncio.Queue[Event]) -> None:
        while True:
            event = await changes.get()
            if (event.rtype.group, event.rtype.plural) == CRDS:
                self.requeue_all()
                continue
            try:
                keys = list(self.keys_for(event))
            except Exception:
                log.exception("%s: mapping a change of %s failed", self.component, event.rtype)
                continue
            for key in keys:
                self.queue.add(key)

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            self._reconcile_one(key)
            await asyncio.sleep(0)  # let the other controllers and the server run

    def _reconcile_one(self, key: Key) -> None:
        try:
            after = self.reconcile(*key)
        except ApiError as error:
            delay = self.queue.retry(key)
            level = logging.DEBUG if error.code in (404, 409) else logging.WARNING
            log.log(level, "%s: %s/%s: %s (retry in %.2fs)", self.component, *key, error, delay)
            return
        except Exception:
            delay = self.queue.retry(key)
            log.exception(
                "%s: reconciling %s/%s failed (retry in %.2fs)", self.component, *key, delay
            )
            return
        self.queue.forget(key)
        if after is not None:
            self.queue.add(key, after)
