"""Our own writes' answers, kept while the informers' caches are older than them.

A write's answer is the object as stored; the watch delivers the same object a moment
later. Until it does, the cache is stale for exactly the objects we just wrote, and a
reconcile in between would start from it: a status PUT with a stale resourceVersion
(409, read again), an apply of what was just applied. `LastWrites.newest()` gives the
cache's copy or our last answer, whichever is newer, and forgets an answer as soon as
the cache has caught up with it (or on `seen()`, from the watch).

resourceVersions are opaque to clients, but every API server we know counts them; when
one is not a number the cache's copy is trusted and the answer forgotten.
"""

from __future__ import annotations

from arks_reconciler.kube.objects import Obj

Key = tuple[str, str, str]
"""(kind, namespace, name)"""


def key_of(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return (str(obj.get("kind")), str(meta.get("namespace") or ""), str(meta.get("name")))


def version(obj: Obj) -> int | None:
    """The resourceVersion as a number; None when it is not one."""
    value = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    return int(value) if value.isdigit() else None


class LastWrites:
    def __init__(self) -> None:
        self._answers: dict[Key, Obj] = {}

    def __len__(self) -> int:
        return len(self._answers)

    def remember(self, answer: Obj) -> Obj:
        """Keep `answer` (what a write returned) until the cache holds it; returns it."""
        if version(answer) is not None:
            self._answers[key_of(answer)] = answer
        return answer

    def forget(self, key: Key) -> None:
        self._answers.pop(key, None)

    def newest(self, key: Key, cached: Obj | None) -> Obj | None:
        """`cached` (the informer's copy, None if it has none), or our last answer for
        `key` when that is newer."""
        answer = self._answers.get(key)
        if answer is None:
            return cached
        if cached is None:
            return answer  # created by us; the watch has not brought it yet
        ours, theirs = version(answer), version(cached)
        if ours is not None and theirs is not None and ours > theirs:
            return answer
        del self._answers[key]
        return cached

    def seen(self, obj: Obj, *, deleted: bool = False) -> None:
        """The watch delivered `obj`: forget an answer it supersedes."""
        key = key_of(obj)
        answer = self._answers.get(key)
        if answer is None:
            return
        ours, theirs = version(answer), version(obj)
        if deleted or ours is None or theirs is None or theirs >= ours:
            del self._answers[key]
