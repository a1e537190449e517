"""Server-side apply: `PATCH` with `application/apply-patch+yaml`, `fieldManager` (required)
and `force`.

The applied configuration is merged into the live object: objects field by field,
list-maps item by item (by their keys), list-sets value by value, everything else
replaced. Then:

- the manager owns exactly the fields of its configuration (its "Apply" entry in
  managedFields), sharing them with managers that set the same values;
- a field the configuration sets to a different value than another manager's is a
  conflict: 409 Conflict listing every such field and its manager, unless `force=true`,
  which takes the fields over;
- a field the manager applied before and has now dropped is removed from the object,
  when no other manager owns it (or anything under it);
- applying to an object that does not exist creates it (201).

`status` is ignored on the main resource of a kind with a status subresource (and the
spec on `/status`), as upstream. What is not implemented: `x-kubernetes-map-type:
atomic`, granular ownership inside atomic lists, version conversion of managedFields.
"""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import yaml

from arks_devcluster import fieldpaths
from arks_devcluster.errors import ApiError
from arks_devcluster.fieldpaths import MISSING, Path
from arks_devcluster.managed_fields import entries, owned, rebuild, same_entry

Obj = dict[str, Any]
MEDIA = "application/apply-patch+yaml"


def parse(raw: bytes) -> Obj:
    """The apply configuration: JSON (what clients send: a fast path) or YAML."""
    body: Any = None
    if raw.lstrip()[:1] == b"{":
        with contextlib.suppress(ValueError):
            body = json.loads(raw)
    if body is None:
        try:
            body = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ApiError(
                400, "BadRequest", f"the apply configuration is not YAML: {exc}"
            ) from exc
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "the apply configuration is not an object")
    return body


def merge(live: Any, applied: Any, schema: Obj | None, name: str = "") -> Any:
    if isinstance(applied, dict) and isinstance(live, dict):
        out = dict(live)
        for key, value in applied.items():
            if value is None:
                continue
            sub = fieldpaths.child(schema, key)
            out[key] = merge(live.get(key), value, sub, key)
        return out
    if isinstance(applied, list) and isinstance(live, list):
        kind, keys = fieldpaths.list_kind(schema, name, applied or live)
        if kind == "map":
            items = fieldpaths.item_schema(schema)
            merged = [copy.deepcopy(i) for i in live]
            for item in applied:
                index = next(
                    (
                        i
                        for i, old in enumerate(merged)
                        if isinstance(old, dict) and all(old.get(k) == item.get(k) for k in keys)
                    ),
                    None,
                )
                if index is None:
                    merged.append(copy.deepcopy(item))
                else:
                    merged[index] = merge(merged[index], item, items)
            return merged
        if kind == "set":
            return list(live) + [v for v in applied if v not in live]
    return copy.deepcopy(_without_nulls(applied))


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _conflict(conflicts: list[tuple[str, str, Path]]) -> ApiError:
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f'conflict with "{manager}" using {version}',
            "field": fieldpaths.show(path),
        }
        for manager, version, path in conflicts
    ]
    count = len(causes)
    if count == 1:
        listed = f"{causes[0]['message']}: {causes[0]['field']}"
    else:
        listed = "\n".join(f"- {c['message']}: {c['field']}" for c in causes)
        listed = f"\n{listed}"
    return ApiError(
        409,
        "Conflict",
        f"Apply failed with {count} conflict{'s' if count > 1 else ''}: {listed}",
        {"causes": causes},
    )


def apply(
    live: Obj | None,
    applied: Obj,
    schema: Obj | None,
    manager: str,
    api_version: str,
    *,
    force: bool,
    status: bool,
) -> Obj:
    """The object after `manager` applies `applied` to `live` (None: not there yet)."""
    applied = _without_nulls(applied)
    base: Obj = copy.deepcopy(live) if live is not None else {}
    mine = set(fieldpaths.object_leaves(applied, schema, status=status))
    applied_values = fieldpaths.object_leaves(applied, schema, status=status)
    subresource = "status" if status else None
    current = entries(live)
    conflicts: list[tuple[str, str, Path]] = []
    sets: list[tuple[Obj, set[Path]]] = []
    for entry in current:
        paths = owned(entry)
        if not same_entry(entry, manager, "Apply", subresource):
            for path in sorted(paths & mine):
                if path[-1].startswith("f:") and fieldpaths.get(base, path) != applied_values[path]:
                    if force:
                        paths = paths - {path}
                    else:
                        conflicts.append((entry["manager"], entry.get("apiVersion", ""), path))
        sets.append((entry, paths))
    if conflicts:
        raise _conflict(conflicts)
    side = {k: v for k, v in applied.items() if (k == "status") == status}
    meta_applied = applied.get("metadata") or {}
    merged: Obj = merge(base, side, schema)
    if not status:
        meta = merged.setdefault("metadata", {})
        for key in fieldpaths.METADATA_TRACKED:
            if key in meta_applied:
                meta[key] = merge(meta.get(key), meta_applied[key], None, key)
        for key in ("name", "namespace", "generateName"):
            if key in meta_applied and key not in meta:
                meta[key] = meta_applied[key]
    merged["apiVersion"] = applied.get("apiVersion", merged.get("apiVersion"))
    merged["kind"] = applied.get("kind", merged.get("kind"))
    before = set()
    for entry in current:
        if same_entry(entry, manager, "Apply", subresource):
            before = owned(entry)
    others: set[Path] = set()
    for entry, paths in sets:
        if not same_entry(entry, manager, "Apply", subresource):
            others |= paths
    removed: list[Path] = []
    for path in sorted(before - mine, key=len):  # an item before its fields
        if any(path[: len(gone)] == gone for gone in removed):
            continue
        if any(other[: len(path)] == path for other in others):
            continue
        if fieldpaths.get(merged, path) is not MISSING:
            fieldpaths.remove(merged, path)
            removed.append(path)
            # a list or map emptied by the removal goes too, unless someone owns it
            parent = path[:-1]
            while len(parent) > 1 and fieldpaths.get(merged, parent) in ({}, []):
                if parent in mine or any(o[: len(parent)] == parent for o in others):
                    break
                fieldpaths.remove(merged, parent)
                parent = parent[:-1]
    merged.setdefault("metadata", {})["managedFields"] = rebuild(
        current, sets, (manager, "Apply", subresource, api_version, mine)
    )
    return merged
