"""Deletion: DeleteOptions (preconditions, propagationPolicy) and the garbage collector.

- `preconditions.uid` / `preconditions.resourceVersion` that do not match the stored
  object: 409 Conflict ("Precondition failed: ..."), nothing deleted;
- `propagationPolicy`:
  - `Background` (the default): the object goes (or waits for its finalizers), then
    every object whose `ownerReferences` name its uid is deleted in turn;
  - `Foreground`: the object gets the `foregroundDeletion` finalizer and a
    deletionTimestamp, its dependents are deleted, and the finalizer is removed when the
    last dependent is gone (so a dependent held by its own finalizer holds the owner);
  - `Orphan`: the owner references to the object are removed from its dependents, which
    stay; then the object is deleted;
- anything else is 400.

The collector runs synchronously inside the write that triggers it, so a client sees
dependents gone (or terminating) as soon as the delete returns; a real cluster does it
asynchronously, seconds later.
"""

from __future__ import annotations

import copy
from typing import Any

from arks_devcluster.errors import ApiError, qualified
from arks_devcluster.resources import ResourceType
from arks_devcluster.store import Event, Store, now

Obj = dict[str, Any]
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
POLICIES = ("Background", "Foreground", "Orphan")


def _precondition(rtype: ResourceType, current: Obj, options: Obj) -> None:
    wanted = options.get("preconditions") or {}
    meta = current["metadata"]
    name = meta["name"]
    for field, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
        if wanted.get(field) and wanted[field] != meta.get(field):
            raise ApiError(
                409,
                "Conflict",
                f"Operation cannot be fulfilled on {qualified(rtype.group, rtype.plural)} "
                f'"{name}": Precondition failed: {label} in precondition: {wanted[field]}, '
                f"{label} in object meta: {meta.get(field)}",
                {"name": name, "group": rtype.group, "kind": rtype.plural},
            )


class Collector:
    """Deletes with a propagation policy; finishes foreground deletions."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.observers.append(self._on_change)

    def delete(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        options: Obj,
        *,
        dry_run: bool = False,
    ) -> Obj:
        """Delete with `options` (preconditions, propagationPolicy); `dry_run`: checked and
        answered with the object as the delete would leave it, nothing changed."""
        store = self.store
        current = store.current(rtype, namespace, name)
        _precondition(rtype, current, options)
        policy = options.get("propagationPolicy") or "Background"
        if policy not in POLICIES:
            raise ApiError(
                400,
                "BadRequest",
                f'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported '
                f'value: "{policy}": supported values: "Foreground", "Background", "Orphan"',
            )
        if dry_run:
            answer = copy.deepcopy(current)
            if answer["metadata"].get("finalizers") or policy == "Foreground":
                answer["metadata"].setdefault("deletionTimestamp", now())
            return answer
        uid = current["metadata"]["uid"]
        if policy == "Orphan":
            self._orphan(uid)
            return store.delete(rtype, namespace, name)
        if policy == "Foreground":
            if current["metadata"].get("deletionTimestamp"):
                return current
            held = copy.deepcopy(current)
            finalizers = held["metadata"].setdefault("finalizers", [])
            if FOREGROUND not in finalizers:
                finalizers.append(FOREGROUND)
            store.update(rtype, namespace, name, held, status_only=False)
            deleted = store.delete(rtype, namespace, name)
            for dep_rtype, dep in store.dependents(uid):
                meta = dep["metadata"]
                if not meta.get("deletionTimestamp"):
                    store.delete(dep_rtype, meta.get("namespace", ""), meta["name"])
            self._finish_foreground(uid)
            return store.find(rtype, namespace, name) or deleted
        return store.delete(rtype, namespace, name)

    def _orphan(self, uid: str) -> None:
        for rtype, dep in self.store.dependents(uid):
            freed = copy.deepcopy(dep)
            refs = [r for r in freed["metadata"]["ownerReferences"] if r.get("uid") != uid]
            if refs:
                freed["metadata"]["ownerReferences"] = refs
            else:
                freed["metadata"].pop("ownerReferences")
            meta = freed["metadata"]
            self.store.update(
                rtype, meta.get("namespace", ""), meta["name"], freed, status_only=False
            )

    def _finish_foreground(self, uid: str) -> None:
        found = self.store.by_uid(uid)
        if found is None:
            return
        rtype, owner = found
        meta = owner["metadata"]
        if FOREGROUND not in (meta.get("finalizers") or []) or not meta.get("deletionTimestamp"):
            return
        if self.store.dependents(uid):
            return
        done = copy.deepcopy(owner)
        done["metadata"]["finalizers"] = [f for f in meta["finalizers"] if f != FOREGROUND]
        self.store.update(rtype, meta.get("namespace", ""), meta["name"], done, status_only=False)

    def _on_change(self, event: Event) -> None:
        if event.type != "DELETED":
            return
        for ref in event.obj["metadata"].get("ownerReferences") or []:
            if ref.get("uid"):
                self._finish_foreground(ref["uid"])
