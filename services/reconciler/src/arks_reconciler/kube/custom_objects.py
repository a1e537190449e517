"""The arks.ai/v1 objects of a cluster, in the shape of the local `ResourceStore`.

`watch()` runs one informer per arks.ai kind and yields what the core consumes: one
`StoreSnapshot` of every kind once all six are listed (and the caches named by `after`
have synced, so the first reconcile sees what runs), a `StoreChange` per watch event,
and, when one kind is listed again (410 Gone), a `StoreSnapshot` of that kind alone.

Writes go where Kubernetes wants them: `update_status` through the status subresource
(PUT with the resourceVersion read; a 409 reads again and retries, so `StatusWriter`
works unchanged), `set_finalizers` as a JSON merge patch of `metadata.finalizers` that
carries the resourceVersion (a stale one is a 409: the core requeues). The first attempt
of either starts from the newest copy known without a request: the informer's, or what
our own last write returned while the watch has not delivered it yet (so a burst of
writes to one object does not conflict with itself), and usually costs one request.

An ArksToken holds its token in plain text in `spec.token` on Kubernetes (upstream's
schema; Secrets and RBAC protect it there); the core hashes it when it publishes grants.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

from arks_common import resources
from arks_common.kubeapi import MERGE_PATCH, KubeApi
from arks_common.runtime import until_set
from arks_common.store import (
    ConflictError,
    NotFoundError,
    Obj,
    ObjectRef,
    StatusMutation,
    StoreChange,
    StoreSnapshot,
    StoreUpdate,
    update_status_loop,
)
from arks_reconciler.kube.informers import Informer
from arks_reconciler.kube.kinds import ARKS
from arks_reconciler.kube.written import LastWrites

_ATTEMPTS = 10
_GRANT_STATUS = "get/update on <kind>/status of arks.ai"


def _ref(obj: Obj) -> ObjectRef:
    meta = obj.get("metadata") or {}
    return ObjectRef(str(obj.get("kind")), str(meta.get("namespace") or ""), str(meta["name"]))


class CustomObjects:
    """ResourceAccess over the Kubernetes API (one `watch()` per instance)."""

    def __init__(
        self,
        kube: KubeApi,
        *,
        namespace: str | None = None,
        page_size: int = 500,
        watch_timeout: int = 300,
        after: Iterable[asyncio.Event] = (),
    ) -> None:
        self.kube = kube
        self._after = list(after)
        """Events to wait for before the first snapshot (other caches' first sync)."""
        self._queue: asyncio.Queue[StoreUpdate] = asyncio.Queue()
        self._listed: set[str] = set()
        self.written = LastWrites()
        self.informers = {
            kind: Informer(
                kube,
                info,
                namespace=namespace,
                page_size=page_size,
                watch_timeout=watch_timeout,
                on_event=self._on_event,
                on_list=lambda items, kind=kind: self._on_list(kind),  # type: ignore[misc]
            )
            for kind, info in ARKS.items()
        }

    @property
    def synced(self) -> bool:
        return len(self._listed) == len(self.informers)

    def cached(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self.informers[kind].get(namespace, name)

    def _latest(self, kind: str, namespace: str, name: str) -> Obj | None:
        """The informer's copy, or our last write's answer when that is newer."""
        return self.written.newest((kind, namespace, name), self.cached(kind, namespace, name))

    # ------------------------------------------------------------------ watching
    def _on_event(self, _type: str, obj: Obj) -> None:
        ref = _ref(obj)
        self.written.seen(obj, deleted=_type == "DELETED")
        if not self.synced:
            return  # the first snapshot carries it
        self._queue.put_nowait(StoreChange(ref, None if _type == "DELETED" else obj))

    def _on_list(self, kind: str) -> None:
        first = not self.synced
        self._listed.add(kind)
        if not self.synced:
            return
        kinds = set(self.informers) if first else {kind}
        objects = {_ref(obj): obj for k in kinds for obj in self.informers[k].objects.values()}
        self._queue.put_nowait(StoreSnapshot(objects, frozenset(kinds)))

    async def watch(
        self, kinds: Iterable[str] | None = None, *, stop: asyncio.Event | None = None
    ) -> AsyncIterator[StoreUpdate]:
        stop = stop or asyncio.Event()
        wanted = set(kinds or resources.PLURALS)
        for event in self._after:
            if not await until_set(event, stop):
                return
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(informer.run(stop), name=f"watch:{kind}")
                for kind, informer in self.informers.items()
            ]
            try:
                while not stop.is_set():
                    getter = asyncio.ensure_future(self._queue.get())
                    stopped = asyncio.ensure_future(stop.wait())
                    try:
                        await asyncio.wait({getter, stopped}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        stopped.cancel()
                        got = getter.done()
                        if not got:
                            getter.cancel()
                    if not got:
                        break
                    update = getter.result()
                    if isinstance(update, StoreChange) and update.ref.kind not in wanted:
                        continue
                    if isinstance(update, StoreSnapshot):
                        update = StoreSnapshot(
                            {r: o for r, o in update.objects.items() if r.kind in wanted},
                            frozenset(update.kinds & wanted),
                        )
                    yield update
            finally:
                for task in tasks:
                    task.cancel()

    # ------------------------------------------------------------------ writing
    async def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        with contextlib.suppress(NotFoundError):
            return await self.kube.request(
                "GET", ARKS[kind].path(namespace, name), where=f"get {kind} {namespace}/{name}"
            )
        return None

    async def update_status(
        self, kind: str, namespace: str, name: str, mutate: StatusMutation
    ) -> Obj | None:
        async def read(attempt: int) -> Obj | None:
            if attempt == 0:
                return self._latest(kind, namespace, name) or await self.get(kind, namespace, name)
            return await self.get(kind, namespace, name)

        async def write(current: Obj, status: Obj) -> Obj:
            body = {
                "apiVersion": current.get("apiVersion") or ARKS[kind].api_version,
                "kind": kind,
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "resourceVersion": current["metadata"]["resourceVersion"],
                },
                "spec": current.get("spec") or {},
                "status": status,
            }
            written = await self.kube.request(
                "PUT",
                ARKS[kind].path(namespace, name, "status"),
                body=body,
                where=f"the status of {kind} {namespace}/{name}",
                grant=_GRANT_STATUS.replace("<kind>", ARKS[kind].plural),
            )
            return self.written.remember(written)

        return await update_status_loop(
            read, write, mutate, attempts=_ATTEMPTS, what=f"{kind} {namespace}/{name}"
        )

    async def set_finalizers(
        self, kind: str, namespace: str, name: str, finalizers: Iterable[str]
    ) -> Obj | None:
        wanted = list(dict.fromkeys(finalizers))
        current = self._latest(kind, namespace, name)
        for _ in range(_ATTEMPTS):
            if current is None:
                current = await self.get(kind, namespace, name)
                if current is None:
                    return None
            meta = current["metadata"]
            if list(meta.get("finalizers") or []) == wanted:
                return current
            patch: dict[str, Any] = {
                "metadata": {
                    "finalizers": wanted or None,
                    "resourceVersion": meta["resourceVersion"],
                }
            }
            try:
                patched = await self.kube.request(
                    "PATCH",
                    ARKS[kind].path(namespace, name),
                    body=patch,
                    content_type=MERGE_PATCH,
                    where=f"the finalizers of {kind} {namespace}/{name}",
                    grant=f"patch on {ARKS[kind].plural} of arks.ai",
                )
                return self.written.remember(patched)
            except ConflictError:
                current = None
            except NotFoundError:
                return None
        raise ConflictError(
            f"finalizers of {kind} {namespace}/{name} keep changing; retry", delay=0.1
        )
