"""The objects and their history: what etcd plus the generic registry do in a real server.

- one `resourceVersion` counter for every object (strictly increasing, as a string);
- `uid`, `creationTimestamp`, `generateName`, `generation` bumped when anything but
  metadata and status changes;
- optimistic concurrency: a write carrying a stale resourceVersion is 409 Conflict;
- a write that changes nothing keeps the resourceVersion (and sends no watch event);
- finalizers: deleting an object that has some sets `deletionTimestamp`, the object goes
  when the last finalizer is removed; ownerReference garbage collection (background);
- a bounded history of changes (`HISTORY` events) for watches from a resourceVersion.

Objects are kept by (group, plural, namespace, name): one copy whatever version a client
reads. Callers get the stored dicts and must copy what they hand out.
"""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from arks_devcluster.errors import ApiError, not_found, qualified
from arks_devcluster.names import generate_name
from arks_devcluster.registry import Registry
from arks_devcluster.resources import ResourceType

Obj = dict[str, Any]
Key = tuple[str, str, str, str]
HISTORY = 1000


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def spec_of(obj: Obj) -> Obj:
    """Everything a generation counts: all but metadata, status and the type fields."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


@dataclass
class Event:
    rv: int
    type: str
    """ADDED, MODIFIED or DELETED"""
    rtype: ResourceType
    obj: Obj


class Store:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._objects: dict[Key, Obj] = {}
        self._by_type: dict[tuple[str, str], dict[Key, Obj]] = {}
        """The same objects by (group, plural): a list reads its type only."""
        self.rv = 0
        self.history: deque[Event] = deque(maxlen=HISTORY)
        self.observers: list[Callable[[Event], None]] = []
        """Called for every change, in order (watchers, the CRD registry)."""

    @staticmethod
    def key(rtype: ResourceType, namespace: str, name: str) -> Key:
        return (rtype.group, rtype.plural, namespace if rtype.namespaced else "", name)

    def _set(self, key: Key, obj: Obj) -> None:
        self._objects[key] = obj
        self._by_type.setdefault((key[0], key[1]), {})[key] = obj

    def _pop(self, key: Key) -> None:
        self._objects.pop(key, None)
        self._by_type.get((key[0], key[1]), {}).pop(key, None)

    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def find(self, rtype: ResourceType, namespace: str, name: str) -> Obj | None:
        return self._objects.get(self.key(rtype, namespace, name))

    def current(self, rtype: ResourceType, namespace: str, name: str) -> Obj:
        found = self.find(rtype, namespace, name)
        if found is None:
            raise not_found(rtype.group, rtype.plural, name)
        return found

    def items(self, rtype: ResourceType, namespace: str | None) -> list[Obj]:
        """The stored objects of a type (in one namespace, or all), by namespace and name."""
        found = [
            (key, obj)
            for key, obj in self._by_type.get((rtype.group, rtype.plural), {}).items()
            if namespace is None or key[2] == namespace
        ]
        found.sort(key=lambda item: item[0])  # only this type's keys are sorted
        return [obj for _, obj in found]

    def by_uid(self, uid: str) -> tuple[ResourceType, Obj] | None:
        for (group, plural, _, _), obj in self._objects.items():
            if obj["metadata"].get("uid") == uid:
                with contextlib.suppress(KeyError):
                    return self.registry.resource(group, plural), obj
        return None

    def dependents(self, owner_uid: str) -> list[tuple[ResourceType, Obj]]:
        """The objects whose ownerReferences name `owner_uid`."""
        out = []
        for (group, plural, _, _), obj in list(self._objects.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if any(ref.get("uid") == owner_uid for ref in refs):
                with contextlib.suppress(KeyError):
                    out.append((self.registry.resource(group, plural), obj))
        return out

    def compact(self) -> None:
        """Forget the history, as etcd compaction does: older watches get 410."""
        self.history.clear()

    def _record(self, kind: str, rtype: ResourceType, obj: Obj) -> None:
        event = Event(int(obj["metadata"]["resourceVersion"]), kind, rtype, copy.deepcopy(obj))
        self.history.append(event)
        for observer in list(self.observers):
            observer(event)

    # ------------------------------------------------------------------ writes
    def create(
        self,
        rtype: ResourceType,
        namespace: str,
        body: Obj,
        *,
        keep_status: bool,
        dry_run: bool = False,
    ) -> Obj:
        """Store a new object; `dry_run`: every check and default, nothing stored."""
        meta = body.setdefault("metadata", {})
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise ApiError(
                    422,
                    "Invalid",
                    f"{rtype.kind} in version {rtype.version!r} cannot be handled as a "
                    f"{rtype.kind}: metadata.name: Required value: name or generateName is "
                    "required",
                )
            meta["name"] = generate_name(prefix)
        name = meta["name"]
        ns = namespace if rtype.namespaced else ""
        key = self.key(rtype, ns, name)
        if key in self._objects:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{qualified(rtype.group, rtype.plural)} "{name}" already exists',
                {"name": name, "group": rtype.group, "kind": rtype.plural},
            )
        body["apiVersion"], body["kind"] = rtype.api_version, rtype.kind
        if rtype.namespaced:
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        meta.update(
            uid=str(uuid.uuid4()),
            creationTimestamp=now(),
            generation=1,
            resourceVersion=str(self.rv if dry_run else self.next_rv()),
        )
        meta.pop("deletionTimestamp", None)
        if rtype.status_subresource and not keep_status:
            body.pop("status", None)
        if dry_run:
            return body
        self._set(key, body)
        self._record("ADDED", rtype, body)
        return body

    def update(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        new: Obj,
        *,
        status_only: bool,
        dry_run: bool = False,
    ) -> Obj:
        """Replace an object (or its status); `dry_run`: the result, nothing stored."""
        current = self.current(rtype, namespace, name)
        wanted = str(new.get("metadata", {}).get("resourceVersion") or "")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f"Operation cannot be fulfilled on {qualified(rtype.group, rtype.plural)} "
                f'"{name}": the object has been modified; please apply your changes to the '
                "latest version and try again",
                {"name": name, "group": rtype.group, "kind": rtype.plural},
            )
        if status_only:
            updated = copy.deepcopy(current)
            if "status" in new:
                updated["status"] = new["status"]
            else:
                updated.pop("status", None)
        else:
            updated = copy.deepcopy(new)
            updated["apiVersion"], updated["kind"] = rtype.api_version, rtype.kind
            meta = updated.setdefault("metadata", {})
            for fixed in ("uid", "creationTimestamp", "namespace", "name", "generation"):
                if fixed in current["metadata"]:
                    meta[fixed] = current["metadata"][fixed]
            if "deletionTimestamp" in current["metadata"]:
                meta["deletionTimestamp"] = current["metadata"]["deletionTimestamp"]
            if rtype.status_subresource:
                if "status" in current:
                    updated["status"] = current["status"]
                else:
                    updated.pop("status", None)
            if spec_of(updated) != spec_of(current):
                meta["generation"] = int(current["metadata"].get("generation", 1)) + 1
        updated["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        if updated == current or dry_run:
            return current if updated == current else updated  # no-op: the version stays
        updated["metadata"]["resourceVersion"] = str(self.next_rv())
        meta = updated["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(rtype, updated)
            return updated
        self._set(self.key(rtype, namespace, name), updated)
        self._record("MODIFIED", rtype, updated)
        return updated

    def delete(self, rtype: ResourceType, namespace: str, name: str) -> Obj:
        current = self.current(rtype, namespace, name)
        if current["metadata"].get("finalizers"):
            if current["metadata"].get("deletionTimestamp"):
                return current
            updated = copy.deepcopy(current)
            updated["metadata"]["deletionTimestamp"] = now()
            updated["metadata"]["deletionGracePeriodSeconds"] = 0
            updated["metadata"]["resourceVersion"] = str(self.next_rv())
            self._set(self.key(rtype, namespace, name), updated)
            self._record("MODIFIED", rtype, updated)
            return updated
        removed = copy.deepcopy(current)
        removed["metadata"]["resourceVersion"] = str(self.next_rv())
        self._remove(rtype, removed)
        return removed

    def _remove(self, rtype: ResourceType, obj: Obj) -> None:
        meta = obj["metadata"]
        self._pop(self.key(rtype, meta.get("namespace", ""), meta["name"]))
        self._record("DELETED", rtype, obj)
        self._collect_garbage(meta["uid"])

    def _collect_garbage(self, owner_uid: str) -> None:
        """Background cascade: every dependent whose owner is gone is deleted."""
        for rtype, obj in self.dependents(owner_uid):
            meta = obj["metadata"]
            if meta.get("deletionTimestamp"):
                continue
            with contextlib.suppress(ApiError):
                self.delete(rtype, meta.get("namespace", ""), meta["name"])
