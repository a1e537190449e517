"""`LocalClient`: the API server as the simulated controllers and kubelet see it.

They run in the server's event loop, so they skip HTTP but not the server's rules: every
write is admitted (names, schemas, CEL), tracked in managedFields under the client's field
manager, versioned and seen by watches exactly like a client's request; a stale
resourceVersion is a 409 `ApiError`, a missing object 404. Objects handed out are copies.

Changes arrive on a queue per subscription (`subscribe`), in resourceVersion order, from
the moment of subscribing: callers list first, then react to events, as an informer does.

    client = LocalClient(api, manager="kube-controller-manager", component="deployment-controller")
    with client.subscribe(("apps", "deployments"), ("", "pods")) as changes:
        for deployment in client.list("apps", "deployments"): ...
        event = await changes.get()
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import copy
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from arks_devcluster import managed_fields
from arks_devcluster.resources import ResourceType
from arks_devcluster.selectors import label_matcher
from arks_devcluster.store import Event, now
from arks_devcluster.writes import write

if TYPE_CHECKING:
    from arks_devcluster.api import FakeKubeApi

Obj = dict[str, Any]
_last_event_stamp = 0


def _event_name(regarding: str) -> str:
    """`<object>.<hex nanoseconds>` as upstream's recorder names Events: they sort by
    time, so `kubectl describe` lists events of one second in the order they happened."""
    global _last_event_stamp
    _last_event_stamp = max(time.time_ns(), _last_event_stamp + 1)
    return f"{regarding}.{_last_event_stamp:x}"


class LocalClient:
    def __init__(self, api: FakeKubeApi, *, manager: str, component: str | None = None) -> None:
        """`manager`: the field manager of every write; `component`: the source of the
        Events recorded (upstream's controllers share the manager `kube-controller-manager`
        but report as `deployment-controller`, `job-controller`, ...); default `manager`."""
        self.api = api
        self.manager = manager
        self.component = component or manager
        self._events: dict[tuple[str, str, str, str], str] = {}
        """(namespace, uid, reason, message) → the name of the Event recorded for it."""

    def rtype(self, group: str, plural: str) -> ResourceType:
        """The served type (KeyError when it is not served, e.g. a CRD not installed)."""
        return self.api.registry.resource(group, plural)

    def served(self, group: str, plural: str) -> bool:
        try:
            self.rtype(group, plural)
        except KeyError:
            return False
        return True

    # ------------------------------------------------------------------ reads
    def get(self, group: str, plural: str, namespace: str, name: str) -> Obj | None:
        found = self.api.store.find(self.rtype(group, plural), namespace, name)
        return copy.deepcopy(found) if found is not None else None

    def list(
        self, group: str, plural: str, namespace: str | None = None, selector: str | None = None
    ) -> builtins.list[Obj]:
        """Objects of a type (in one namespace or all), filtered by a label selector."""
        if not self.served(group, plural):
            return []
        matches = label_matcher(selector)
        items = self.api.store.items(self.rtype(group, plural), namespace)
        return [copy.deepcopy(obj) for obj in items if matches(obj)]

    def stored(self, group: str, plural: str, namespace: str | None = None) -> builtins.list[Obj]:
        """The stored objects of a type themselves, not copies: for reading only (the
        kubelet and the scheduler scan every pod on each change; copying them all made
        that quadratic). Copy what is kept or changed."""
        if not self.served(group, plural):
            return []
        return self.api.store.items(self.rtype(group, plural), namespace)

    def owned_by(self, owner: Obj, group: str, plural: str) -> builtins.list[Obj]:
        """The objects of a type whose controller ownerReference is `owner`."""
        uid = owner["metadata"]["uid"]
        namespace = owner["metadata"].get("namespace")
        if not self.served(group, plural):
            return []
        # Matched on the stored objects, so only the matches are copied (not every one).
        return [
            copy.deepcopy(obj)
            for obj in self.api.store.items(self.rtype(group, plural), namespace)
            if any(
                ref.get("uid") == uid and ref.get("controller")
                for ref in obj["metadata"].get("ownerReferences") or []
            )
        ]

    # ------------------------------------------------------------------ writes
    def create(self, obj: Obj) -> Obj:
        """POST: status dropped for kinds with a status subresource, as a request's."""
        rtype = self.api.registry.by_kind(obj["apiVersion"], obj["kind"])
        namespace = obj.get("metadata", {}).get("namespace", "default")
        body = copy.deepcopy(obj)
        self.api.admit(rtype, body, None)
        managed_fields.track_update(
            None, body, rtype.schema, self.manager, rtype.api_version, status=False
        )
        created = self.api.store.create(
            rtype, namespace, body, keep_status=not rtype.status_subresource
        )
        return copy.deepcopy(created)

    def update(self, obj: Obj, *, status: bool = False) -> Obj:
        """PUT of the object (`status`: of its status subresource); 409 when stale."""
        rtype = self.api.registry.by_kind(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        written = write(
            self.api,
            rtype,
            meta.get("namespace", "") if rtype.namespaced else "",
            meta["name"],
            copy.deepcopy(obj),
            status=status and rtype.status_subresource,
            strict=False,
            manager=self.manager,
            api_version=rtype.api_version,
        )
        return copy.deepcopy(written)

    def delete(self, obj: Obj, *, policy: str = "Background") -> None:
        """DELETE with a propagation policy; an object already gone is not an error."""
        rtype = self.api.registry.by_kind(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        namespace = meta.get("namespace", "") if rtype.namespaced else ""
        if self.api.store.find(rtype, namespace, meta["name"]) is None:
            return
        self.api.collector.delete(rtype, namespace, meta["name"], {"propagationPolicy": policy})

    def event(
        self,
        regarding: Obj,
        reason: str,
        message: str,
        *,
        warning: bool = False,
        field_path: str | None = None,
    ) -> None:
        """Record a core/v1 Event about an object, as a controller's EventRecorder does
        (`kubectl describe` shows it); a repeat of the same reason and message counts up.
        `field_path` names a part of the object (`spec.containers{web}`, the kubelet's)."""
        meta = regarding["metadata"]
        namespace = meta.get("namespace") or "default"
        kind = "Warning" if warning else "Normal"
        # The Event recorded for the same object, reason and message counts up; an
        # index finds it (scanning the namespace's Events for each new one made
        # recording quadratic).
        index = (namespace, str(meta.get("uid")), reason, message)
        known = self._events.get(index)
        stored = self.api.store.find(self.rtype("", "events"), namespace, known) if known else None
        if stored is not None:
            existing = copy.deepcopy(stored)
            existing["count"] = int(existing.get("count") or 1) + 1
            existing["lastTimestamp"] = now()
            self.update(existing)
            return
        stamp = now()
        created = self.create(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {
                    "namespace": namespace,
                    **(
                        {"name": _event_name(meta["name"])}
                        if len(meta["name"]) <= 236  # room for "." and 16 hex digits
                        else {"generateName": f"{meta['name'][:200]}."}
                    ),
                },
                "involvedObject": {
                    "apiVersion": regarding.get("apiVersion"),
                    "kind": regarding.get("kind"),
                    "name": meta["name"],
                    "namespace": meta.get("namespace"),
                    "uid": meta.get("uid"),
                    "resourceVersion": meta.get("resourceVersion"),
                    **({"fieldPath": field_path} if field_path else {}),
                },
                "reason": reason,
                "message": message,
                "type": kind,
                "count": 1,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "source": {"component": self.component},
                "reportingComponent": self.component,
            }
        )
        self._events[index] = created["metadata"]["name"]

    # ------------------------------------------------------------------ changes
    @contextlib.contextmanager
    def subscribe(self, *kinds: tuple[str, str]) -> Iterator[asyncio.Queue[Event]]:
        """A queue of the changes to objects of the given (group, plural) types, from now
        until the block ends."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        wanted = set(kinds)

        def observe(event: Event) -> None:
            if (event.rtype.group, event.rtype.plural) in wanted:
                queue.put_nowait(event)

        observers = self.api.store.observers
        observers.append(observe)
        try:
            yield queue
        finally:
            observers.remove(observe)


def controller_ref(owner: Obj) -> Obj:
    """The ownerReference a controller sets on what it creates."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
