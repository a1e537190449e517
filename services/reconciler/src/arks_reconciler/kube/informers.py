"""Informers: a cache of one kind kept current by list + watch, indexed by owner.

`run()` lists the kind page by page (`limit`/`continue`), replaces the cache, then
watches from the list's resourceVersion with bookmarks (which move the version forward
without objects) for `watch_timeout` seconds at a time, resuming from the last version
seen. A 410 Gone — on the watch or while paging — relists that kind alone (`relists`
counts them); other trouble is retried with backoff from the last version.

A kind whose CRD is not installed answers 404: the informer is then `available = False`
(and `synced`, with an empty cache), and looks again every `missing_retry` seconds, so a
driver installed later is picked up without a restart.

Two indexes keep lookups off the whole cache: by controller ownerReference (its uid, or
its kind, namespace and name) and, when `index_label` is given, by namespace and the
value of that label.

Every change reaches `on_event(type, obj)` (`ADDED`, `MODIFIED`, `DELETED`; a relist
reports what changed since the last view the same way), and a completed list reaches
`on_list(objects)`. Callbacks run in the informer's task and must not block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from arks_common.errors import RetryableError
from arks_common.kubeapi import ExpiredError, KubeApi
from arks_common.store import NotFoundError
from arks_reconciler.kube.kinds import KindInfo

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[str, str]
EventHandler = Callable[[str, Obj], None]
ListHandler = Callable[[list[Obj]], None]


def key_of(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name")))


def _controller(obj: Obj) -> Obj | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def _index_keys(obj: Obj, label: str | None) -> list[tuple[str, ...]]:
    """The index entries of `obj`: ("uid", uid) and ("controller", kind, namespace, name)
    of its controller, ("label", namespace, value) of `label`."""
    meta = obj.get("metadata") or {}
    namespace = str(meta.get("namespace") or "")
    keys: list[tuple[str, ...]] = []
    ref = _controller(obj)
    if ref is not None:
        keys.append(("uid", str(ref.get("uid"))))
        keys.append(("controller", str(ref.get("kind")), namespace, str(ref.get("name"))))
    if label is not None:
        value = (meta.get("labels") or {}).get(label)
        if value is not None:
            keys.append(("label", namespace, str(value)))
    return keys


class Informer:
    def __init__(
        self,
        kube: KubeApi,
        kind: KindInfo,
        *,
        namespace: str | None = None,
        selector: str | None = None,
        index_label: str | None = None,
        page_size: int = 500,
        watch_timeout: int = 300,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        missing_retry: float = 10.0,
        on_event: EventHandler | None = None,
        on_list: ListHandler | None = None,
    ) -> None:
        self.kube = kube
        self.kind = kind
        self.namespace = namespace
        self.selector = selector
        self.index_label = index_label
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.missing_retry = missing_retry
        self.on_event = on_event
        self.on_list = on_list
        self.objects: dict[Key, Obj] = {}
        self._index: dict[tuple[str, ...], set[Key]] = {}
        self.synced = asyncio.Event()
        """Set once the first list completed (or the kind turned out not to exist)."""
        self.available = True
        """False while the API does not serve this kind (its CRD is missing)."""
        self.relists = 0
        """Lists after the first (410 Gone, errors)."""
        self.lists = 0

    # ------------------------------------------------------------------ reading
    def get(self, namespace: str, name: str) -> Obj | None:
        return self.objects.get((namespace, name))

    def _indexed(self, key: tuple[str, ...]) -> list[Obj]:
        return [self.objects[k] for k in sorted(self._index.get(key, ())) if k in self.objects]

    def owned_by(self, uid: str) -> list[Obj]:
        """Objects whose controller ownerReference has `uid`, by name."""
        return self._indexed(("uid", uid))

    def controlled_by(self, kind: str, namespace: str, name: str) -> list[Obj]:
        """Objects of `namespace` whose controller ownerReference is kind/name, by name."""
        return self._indexed(("controller", kind, namespace, name))

    def select(self, namespace: str | None = None, **labels: str) -> list[Obj]:
        """Objects (of `namespace`, if given) carrying every label of `labels`, by key."""
        if namespace is not None and self.index_label in labels:
            candidates = self._indexed(("label", namespace, labels[self.index_label]))
            items = [(key_of(o), o) for o in candidates]
        else:
            items = sorted(self.objects.items())
        out = []
        for (ns, _), obj in items:
            if namespace is not None and ns != namespace:
                continue
            have = (obj.get("metadata") or {}).get("labels") or {}
            if all(have.get(k) == v for k, v in labels.items()):
                out.append(obj)
        return out

    # ------------------------------------------------------------------ cache
    def _put(self, obj: Obj) -> Obj | None:
        key = key_of(obj)
        before = self.objects.get(key)
        if before is not None:
            self._unindex(key, before)
        self.objects[key] = obj
        for entry in _index_keys(obj, self.index_label):
            self._index.setdefault(entry, set()).add(key)
        return before

    def _remove(self, key: Key) -> Obj | None:
        before = self.objects.pop(key, None)
        if before is not None:
            self._unindex(key, before)
        return before

    def _unindex(self, key: Key, obj: Obj) -> None:
        for entry in _index_keys(obj, self.index_label):
            keys = self._index.get(entry)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._index[entry]

    def _replace(self, items: Iterable[Obj]) -> None:
        fresh = {key_of(o): o for o in items}
        changes: list[tuple[str, Obj]] = []
        for key in list(self.objects):
            if key not in fresh:
                gone = self._remove(key)
                if gone is not None:
                    changes.append(("DELETED", gone))
        for obj in fresh.values():
            before = self._put(obj)
            if before is None:
                changes.append(("ADDED", obj))
            elif _version(before) != _version(obj):
                changes.append(("MODIFIED", obj))
        if self.on_list is not None:
            self.on_list(list(fresh.values()))
        if self.on_event is not None:
            for kind, obj in changes:
                self.on_event(kind, obj)

    # ------------------------------------------------------------------ running
    async def run(self, stop: asyncio.Event) -> None:
        task = asyncio.create_task(self._loop(), name=f"informer:{self.kind.plural}")
        try:
            await stop.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        delay = self.retry_initial
        version: str | None = None
        while True:
            try:
                if version is None:
                    version = await self._list()
                    delay = self.retry_initial
                version = await self._watch(version)
            except ExpiredError:
                log.info("%s: resourceVersion expired, listing again", self.kind.plural)
                version = None
            except NotFoundError:
                if self.available:
                    log.warning(
                        "the API does not serve %s (is its CRD installed?); looking again "
                        "every %.0f s",
                        self.kind.plural,
                        self.missing_retry,
                    )
                self.available = False
                self._replace(())
                self.synced.set()
                version = None
                await asyncio.sleep(self.missing_retry)
            except RetryableError as exc:
                log.warning("%s: %s; retrying in %.1f s", self.kind.plural, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)

    def _query(self) -> dict[str, Any]:
        return {"labelSelector": self.selector} if self.selector else {}

    async def _list(self) -> str:
        items: list[Obj] = []
        token: str | None = None
        while True:
            query = {**self._query(), "limit": self.page_size}
            if token:
                query["continue"] = token
            page = await self.kube.request(
                "GET", self.kind.path(self.namespace), query=query, where=f"list {self.kind.plural}"
            )
            for item in page.get("items") or []:
                item.setdefault("apiVersion", self.kind.api_version)
                item.setdefault("kind", self.kind.kind)
                items.append(item)
            meta = page.get("metadata") or {}
            token = meta.get("continue") or None
            if not token:
                break
        if self.lists:
            self.relists += 1
        self.lists += 1
        if not self.available:
            log.info("the API serves %s now", self.kind.plural)
        self.available = True
        self._replace(items)
        self.synced.set()
        return str(meta.get("resourceVersion") or "")

    async def _watch(self, version: str) -> str:
        """Watch from `version` until the server ends the stream; the last version seen."""
        query = {
            **self._query(),
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": self.watch_timeout,
        }
        async for event in self.kube.stream(
            self.kind.path(self.namespace), query=query, where=f"watch {self.kind.plural}"
        ):
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise ExpiredError(str(obj.get("message") or "410 Gone"))
                raise RetryableError(f"watch of {self.kind.plural}: {obj.get('message')}")
            version = _version(obj) or version
            if kind == "BOOKMARK":
                continue
            obj.setdefault("apiVersion", self.kind.api_version)
            obj.setdefault("kind", self.kind.kind)
            if kind == "DELETED":
                self._remove(key_of(obj))
            else:
                self._put(obj)
            if self.on_event is not None and kind in ("ADDED", "MODIFIED", "DELETED"):
                self.on_event(str(kind), obj)
        return version


def _version(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")
