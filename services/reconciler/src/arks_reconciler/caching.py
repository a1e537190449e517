"""The reconciler's view of every arks.ai/v1 object, fed by the platform's watch.

Objects are kept raw (what the API returned) and typed (`parse_resource`); an object that
no longer validates (written by an older version, or edited around the schema) is kept
raw with its `ResourceError`, so the core can report what to fix in a condition instead
of crashing or silently ignoring it.

`dependents()` says which other objects must be reconciled when one changes: a model's
applications. (The endpoints of an application are enqueued by the reconciler when what
they read of it changes: `Reconciler._note_routing`.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from arks_common import resources
from arks_common.resources import ResourceError
from arks_common.store import Obj, ObjectRef

MODEL = "ArksModel"
APPLICATION = "ArksApplication"
DISAGGREGATED = "ArksDisaggregatedApplication"
ENDPOINT = "ArksEndpoint"
TOKEN = "ArksToken"
QUOTA = "ArksQuota"
APPLICATION_KINDS = (APPLICATION, DISAGGREGATED)

T = TypeVar("T", bound=resources.ArksResource[Any, Any])


@dataclass(frozen=True)
class Entry:
    raw: Obj
    typed: resources.AnyResource | None
    error: ResourceError | None


def ref_of(resource: resources.ArksResource[Any, Any]) -> ObjectRef:
    return ObjectRef(resource.kind, resource.metadata.namespace, resource.metadata.name)


def deleting(resource: resources.ArksResource[Any, Any]) -> bool:
    return resource.metadata.deletion_timestamp is not None


def _version(raw: Obj) -> int | None:
    value = str((raw.get("metadata") or {}).get("resourceVersion") or "")
    return int(value) if value.isdigit() else None


def _older(raw: Obj, than: Obj) -> bool:
    """Whether `raw` is an older copy of the same object than `than` (same uid, smaller
    numeric resourceVersion; opaque versions are never called older)."""
    uid, other_uid = ((o.get("metadata") or {}).get("uid") for o in (raw, than))
    if uid != other_uid:
        return False
    mine, theirs = _version(raw), _version(than)
    return mine is not None and theirs is not None and mine < theirs


class ResourceCache:
    def __init__(self) -> None:
        self._entries: dict[ObjectRef, Entry] = {}
        self.synced = False
        """True once a full snapshot arrived (before that, absence proves nothing)."""

    @staticmethod
    def _entry(raw: Obj) -> Entry:
        try:
            return Entry(raw, resources.parse_resource(raw), None)
        except ResourceError as exc:
            return Entry(raw, None, exc)

    def replace(self, objects: dict[ObjectRef, Obj], kinds: Iterable[str]) -> set[ObjectRef]:
        """Replace every object of `kinds` (others are kept); returns every ref of those
        kinds that exists now or existed before."""
        replaced = set(kinds)
        before = {ref for ref in self._entries if ref.kind in replaced}
        kept = {ref: e for ref, e in self._entries.items() if ref.kind not in replaced}
        fresh = {ref: self._entry(raw) for ref, raw in objects.items() if ref.kind in replaced}
        self._entries = {**kept, **fresh}
        self.synced = True
        return before | set(fresh)

    def put(self, ref: ObjectRef, raw: Obj | None) -> Entry | None:
        """Store a change; returns the previous entry.

        A copy older than the one held (a smaller resourceVersion: a watch event still in
        flight when our own write's answer was put here) is ignored.
        """
        previous = self._entries.get(ref)
        if raw is None:
            self._entries.pop(ref, None)
        elif previous is None or not _older(raw, previous.raw):
            self._entries[ref] = self._entry(raw)
        return previous

    def entry(self, ref: ObjectRef) -> Entry | None:
        return self._entries.get(ref)

    def get(self, ref: ObjectRef, cls: type[T]) -> T | None:
        entry = self._entries.get(ref)
        if entry is None or entry.typed is None or not isinstance(entry.typed, cls):
            return None
        return entry.typed

    def refs(self, kind: str | None = None, namespace: str | None = None) -> Iterator[ObjectRef]:
        for ref in list(self._entries):
            if (kind is None or ref.kind == kind) and (
                namespace is None or ref.namespace == namespace
            ):
                yield ref

    def of_kind(self, cls: type[T], namespace: str | None = None) -> list[T]:
        kind = cast(str, cls.model_fields["kind"].default)
        out: list[T] = []
        for ref in self.refs(kind, namespace):
            typed = self.get(ref, cls)
            if typed is not None:
                out.append(typed)
        return out

    def dependents(self, ref: ObjectRef, before: Entry | None = None) -> set[ObjectRef]:
        """Objects whose reconcile reads `ref` (beside `ref` itself)."""
        out: set[ObjectRef] = set()
        if ref.kind == MODEL:
            for kind in APPLICATION_KINDS:
                for app_ref in self.refs(kind, ref.namespace):
                    entry = self._entries.get(app_ref)
                    typed = entry.typed if entry else None
                    if (
                        isinstance(
                            typed,
                            resources.ArksApplication | resources.ArksDisaggregatedApplication,
                        )
                        and typed.spec.model.name == ref.name
                    ):
                        out.add(app_ref)
        return out
