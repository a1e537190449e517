"""Watches: `?watch=true` as a stream of JSON lines, one `{"type", "object"}` per change.

A watch from resourceVersion "" or "0" starts with an ADDED event for every current
object (a synthetic list); from a later version it replays the kept history after it,
then follows live changes. A version older than the history kept is gone: one ERROR event
carrying a 410 Expired Status, after which the client must list again. BOOKMARK events
(only the resourceVersion) come about once a second when asked for with
`allowWatchBookmarks`; the stream ends after `timeoutSeconds`.

A slow client does not hold the server back: each watcher has an unbounded queue that
the store fills synchronously, so memory grows with what a stalled client has not read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import StreamingResponse

from arks_devcluster.errors import status_from
from arks_devcluster.resources import ResourceType
from arks_devcluster.store import Event, Store

Obj = dict[str, Any]
BOOKMARK_EVERY = 1.0


@dataclass
class Watcher:
    rtype: ResourceType
    namespace: str | None
    matches: Callable[[Obj], bool]
    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)

    def wants(self, event: Event) -> bool:
        return (
            event.rtype.group == self.rtype.group
            and event.rtype.plural == self.rtype.plural
            and (
                self.namespace is None
                or self.namespace == event.obj["metadata"].get("namespace", "")
            )
        )


class Watches:
    """The open watches of a store: every change is queued to the watchers it concerns."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._watchers: list[Watcher] = []
        store.observers.append(self._notify)

    def _notify(self, event: Event) -> None:
        for watcher in self._watchers:
            if watcher.wants(event):
                watcher.queue.put_nowait(event)

    def open(
        self,
        rtype: ResourceType,
        namespace: str | None,
        matches: Callable[[Obj], bool],
        since: str | None,
    ) -> tuple[Watcher, list[Event] | None]:
        """Register a watcher; return it with the events to send first, or None when
        `since` is older than the history kept (410)."""
        watcher = Watcher(rtype, namespace, matches)
        store = self.store
        initial: list[Event] | None
        if since in (None, "", "0"):
            initial = [
                Event(int(o["metadata"]["resourceVersion"]), "ADDED", rtype, o)
                for o in store.items(rtype, namespace)
            ]
        else:
            oldest = store.history[0].rv if store.history else store.rv + 1
            start = int(since or 0)
            if start < oldest - 1 and start < store.rv:
                initial = None
            else:
                initial = [e for e in store.history if e.rv > start and watcher.wants(e)]
        self._watchers.append(watcher)
        return watcher, initial

    def close(self, watcher: Watcher) -> None:
        with contextlib.suppress(ValueError):
            self._watchers.remove(watcher)

    def response(
        self,
        rtype: ResourceType,
        namespace: str | None,
        matches: Callable[[Obj], bool],
        since: str | None,
        *,
        bookmarks: bool,
        timeout: float,
        present: Callable[[Obj], Obj] = lambda obj: obj,
    ) -> StreamingResponse:
        """The stream of a watch; `present` turns a stored object into what the client
        reads (another version, another API's view)."""
        watcher, initial = self.open(rtype, namespace, matches, since)
        store = self.store

        async def stream() -> AsyncIterator[bytes]:
            try:
                if initial is None:
                    status = status_from(
                        410, "Expired", f"too old resource version: {since} ({store.rv})"
                    )
                    yield line("ERROR", status)
                    return
                for event in initial:
                    if matches(event.obj):
                        yield line(event.type, present(event.obj))
                loop = asyncio.get_running_loop()
                deadline = loop.time() + timeout
                while (left := deadline - loop.time()) > 0:
                    try:
                        event = await asyncio.wait_for(
                            watcher.queue.get(), min(left, BOOKMARK_EVERY)
                        )
                    except TimeoutError:
                        if bookmarks:
                            yield line(
                                "BOOKMARK",
                                {
                                    "apiVersion": rtype.api_version,
                                    "kind": rtype.kind,
                                    "metadata": {"resourceVersion": str(store.rv)},
                                },
                            )
                        continue
                    if matches(event.obj):
                        yield line(event.type, present(event.obj))
            finally:
                self.close(watcher)

        return StreamingResponse(stream(), media_type="application/json")


def line(kind: str, obj: Obj) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"
