"""Lists: selectors and pagination (`limit` / `continue`).

A page holds at most `limit` items in (namespace, name) order; when more remain, the list
metadata carries `continue` (an opaque token: the resourceVersion of the first page and
the last key served, base64 JSON) and `remainingItemCount`. The next page lists what
comes after that key. Unlike etcd, pages are read from the live store, not from a
snapshot at the first page's resourceVersion: objects created or deleted between pages
show up or disappear (a real server shows the snapshot). A token that does not decode is
400; a token older than the kept history is 410 Expired, as the real server answers once
etcd has compacted it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from arks_devcluster.errors import ApiError
from arks_devcluster.resources import ResourceType
from arks_devcluster.store import Store

Obj = dict[str, Any]


def _token(rv: int, namespace: str, name: str) -> str:
    raw = json.dumps({"rv": rv, "start": [namespace, name]}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode(token: str) -> tuple[int, tuple[str, str]]:
    try:
        doc = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(doc["rv"]), (str(doc["start"][0]), str(doc["start"][1]))
    except (binascii.Error, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ApiError(400, "BadRequest", "continue key is not valid: bad token") from exc


def page(
    store: Store,
    rtype: ResourceType,
    namespace: str | None,
    matches: Callable[[Obj], bool],
    limit: int,
    token: str | None,
) -> tuple[list[Obj], Obj]:
    """(items, list metadata) of one page."""
    items = [o for o in store.items(rtype, namespace) if matches(o)]
    rv = store.rv
    if token:
        rv, start = _decode(token)
        oldest = store.history[0].rv if store.history else store.rv
        if rv < oldest - 1 and rv < store.rv:
            raise ApiError(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list "
                "result. You can start a new list without the continue parameter.",
            )
        items = [
            o for o in items if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start
        ]
    meta: Obj = {"resourceVersion": str(store.rv)}
    if limit > 0 and len(items) > limit:
        last = items[limit - 1]["metadata"]
        meta["continue"] = _token(rv, last.get("namespace", ""), last["name"])
        meta["remainingItemCount"] = len(items) - limit
        items = items[:limit]
    return items, meta
