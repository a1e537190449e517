"""Strategic merge patch on built-in kinds (`application/strategic-merge-patch+json`),
what client-side `kubectl apply`, `kubectl edit` and `kubectl patch` send.

Like a JSON merge patch, except that lists with a patch merge key merge item by item
(the same lists and keys as `fieldpaths` knows: containers, env, volumes by name, ports
by containerPort or port, volumeMounts by mountPath, conditions by type, ...) and
`finalizers` merge as a set; and the directives kubectl uses are honoured:
`$patch: delete` (an item or a map), `$patch: replace`, `$setElementOrder/<list>`,
`$deleteFromPrimitiveList/<list>` and `$retainKeys`. Other lists are replaced. Custom
resources take no strategic merge patch (415), as upstream.
"""

from __future__ import annotations

import copy
from typing import Any

from arks_devcluster.fieldpaths import list_kind

Obj = dict[str, Any]
_DELETE = object()


def strategic_merge(original: Any, patch: Any) -> Any:
    result = _merge(original, patch)
    return {} if result is _DELETE else result


def _merge(original: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return _DELETE
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    out = dict(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            out.pop(key, None)
        elif isinstance(value, list):
            out[key] = _merge_list(out.get(key), value, key)
        else:
            merged = _merge(out.get(key), value)
            if merged is _DELETE:
                out.pop(key, None)
            else:
                out[key] = merged
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            out[field] = [v for v in out.get(field) or [] if v not in value]
        elif key.startswith("$setElementOrder/"):
            field = key.split("/", 1)[1]
            if isinstance(out.get(field), list):
                out[field] = _ordered(out[field], value, field)
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    return out


def _merge_list(original: Any, patch: list[Any], name: str) -> list[Any]:
    live = list(original) if isinstance(original, list) else []
    kind, keys = list_kind(None, name, patch or live)
    if kind == "set":
        return live + [v for v in patch if v not in live]
    if kind != "map":
        return [copy.deepcopy(v) for v in patch if not _is_directive(v)]
    out = [copy.deepcopy(i) for i in live]
    for item in patch:
        if not isinstance(item, dict):
            continue
        index = next(
            (
                i
                for i, old in enumerate(out)
                if isinstance(old, dict) and all(old.get(k) == item.get(k) for k in keys)
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del out[index]
        elif index is None:
            out.append(_merge({}, item))
        else:
            out[index] = _merge(out[index], item)
    return out


def _is_directive(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"$patch"}


def _ordered(items: list[Any], order: list[Any], name: str) -> list[Any]:
    """Items in the order `$setElementOrder` gives; others keep their place after."""
    kind, keys = list_kind(None, name, items)

    def rank(item: Any) -> int:
        for index, wanted in enumerate(order):
            if kind == "map" and isinstance(item, dict) and isinstance(wanted, dict):
                if all(item.get(k) == wanted.get(k) for k in keys):
                    return index
            elif item == wanted:
                return index
        return len(order)

    return sorted(items, key=rank)
