"""Writes of owned objects: server-side apply, skipped when the cache already matches.

`apply(obj)` sends the rendered object as an apply patch (field manager
`arks-reconciler`, `force=true`: we own the fields we render, also those a previous
owner such as upstream Arks' controller set) unless the informer's copy already holds
every field we render with the same value (`contains`): the server adds defaults and
status, so "matches" means "our fields are there", not equality. A steady cluster is
therefore not written on resync; and as the copy compared is the newer of the cache's
and our last apply's answer (`written.LastWrites`), a reconcile that runs before the
watch delivers our own apply does not apply it again. `delete()` removes an object with background
propagation (its children go through garbage collection) and ignores one already gone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from arks_common.kubeapi import APPLY_PATCH, KubeApi
from arks_common.store import NotFoundError
from arks_reconciler.kube.kinds import KindInfo, kind_of
from arks_reconciler.kube.objects import FIELD_MANAGER, Obj
from arks_reconciler.kube.written import LastWrites, key_of

Lookup = Callable[[KindInfo, str, str], Obj | None]


def contains(have: Any, want: Any) -> bool:
    """Whether `have` holds everything of `want` (dicts: every key of `want`, recursively;
    lists: the same length, item by item; scalars: equal)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(
            k in have and contains(have[k], v) for k, v in want.items()
        )
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(have) == len(want)
            and all(contains(h, w) for h, w in zip(have, want, strict=True))
        )
    return bool(have == want)


class Applier:
    def __init__(self, kube: KubeApi, lookup: Lookup) -> None:
        self.kube = kube
        self.lookup = lookup
        """The informer's copy of an object (kind, namespace, name), None if unknown."""
        self.applied = 0
        self.skipped = 0
        self.written = LastWrites()

    def current(self, obj: Obj) -> Obj | None:
        meta = obj["metadata"]
        cached = self.lookup(kind_of(obj), meta.get("namespace") or "", meta["name"])
        return self.written.newest(key_of(obj), cached)

    async def apply(self, obj: Obj) -> Obj:
        """The object as stored after applying `obj` (or the cached copy if it matched)."""
        cached = self.current(obj)
        if cached is not None and contains(cached, obj):
            self.skipped += 1
            return cached
        info = kind_of(obj)
        meta = obj["metadata"]
        answer = await self.kube.request(
            "PATCH",
            info.path(meta.get("namespace"), meta["name"]),
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=obj,
            content_type=APPLY_PATCH,
            where=f"apply {info.kind} {meta.get('namespace', '')}/{meta['name']}",
            grant=f"get/list/watch/create/patch/delete on {info.plural} ({info.group or 'core'})",
        )
        self.applied += 1
        answer.setdefault("kind", info.kind)
        return self.written.remember(answer)

    async def delete(self, info: KindInfo, namespace: str, name: str) -> bool:
        """Delete (background propagation); False when it was gone already."""
        self.written.forget((info.kind, namespace, name))
        with contextlib.suppress(NotFoundError):
            await self.kube.request(
                "DELETE",
                info.path(namespace, name),
                body={"propagationPolicy": "Background"},
                where=f"delete {info.kind} {namespace}/{name}",
                grant=f"delete on {info.plural} ({info.group or 'core'})",
            )
            return True
        return False
