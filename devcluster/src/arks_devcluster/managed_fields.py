"""managedFields: which field manager owns which fields of an object.

Every write records its manager (the `fieldManager` query parameter, else the client's
User-Agent up to the first "/", as upstream): an entry per (manager, operation,
subresource) with the owned fields in FieldsV1 (see `fieldpaths`).

- An update (create, PUT, patch) takes ownership of every field whose value it changed
  or added, from whoever had it; fields it removed are owned by nobody any more.
- A server-side apply (see `apply`) owns exactly the fields of its configuration, shared
  with other managers that set the same values.
- Entries left with no fields are dropped; an entry whose fields did not change keeps its
  time, so a write that changes nothing stays a no-op.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from arks_devcluster.fieldpaths import Path, from_fields, object_leaves, to_fields
from arks_devcluster.store import now

Obj = dict[str, Any]


def manager_of(request: Request) -> str:
    given = request.query_params.get("fieldManager")
    if given:
        return given
    agent = request.headers.get("user-agent", "unknown")
    return agent.split("/")[0] or "unknown"


def entries(obj: Obj | None) -> list[Obj]:
    if obj is None:
        return []
    return list((obj.get("metadata") or {}).get("managedFields") or [])


def owned(entry: Obj) -> set[Path]:
    return from_fields(entry.get("fieldsV1") or {})


def same_entry(entry: Obj, manager: str, operation: str, subresource: str | None) -> bool:
    return (
        entry.get("manager") == manager
        and entry.get("operation") == operation
        and entry.get("subresource") == subresource
    )


def rebuild(
    old_entries: list[Obj],
    sets: list[tuple[Obj, set[Path]]],
    mine: tuple[str, str, str | None, str, set[Path]],
) -> list[Obj]:
    """Entries from (entry, its new field set) pairs plus this write's own entry
    (manager, operation, subresource, apiVersion, fields); empty ones dropped."""
    manager, operation, subresource, api_version, fields = mine
    out = []
    found = False
    for entry, paths in sets:
        if same_entry(entry, manager, operation, subresource):
            found = True
            paths = fields
            fresh = owned(entry) != fields
        else:
            fresh = owned(entry) != paths
        if not paths:
            continue
        updated = dict(entry)
        if fresh:
            updated.update(time=now(), fieldsV1=to_fields(paths))
            if same_entry(entry, manager, operation, subresource):
                updated["apiVersion"] = api_version
        out.append(updated)
    if not found and fields:
        added: Obj = {
            "manager": manager,
            "operation": operation,
            "apiVersion": api_version,
            "time": now(),
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields(fields),
        }
        if subresource:
            added["subresource"] = subresource
        out.append(added)
    return out


def track_update(
    old: Obj | None,
    new: Obj,
    schema: Obj | None,
    manager: str,
    api_version: str,
    *,
    status: bool,
) -> None:
    """Set `new`'s managedFields after an update (or create) by `manager`."""
    before = object_leaves(old, schema, status=status) if old is not None else {}
    after = object_leaves(new, schema, status=status)
    changed = {p for p, v in after.items() if p not in before or before[p] != v}
    removed = set(before) - set(after)
    current = entries(old)
    subresource = "status" if status else None
    sets = [(e, owned(e) - changed - removed) for e in current]
    mine = set()
    for entry, _ in sets:
        if same_entry(entry, manager, "Update", subresource):
            mine = owned(entry) - removed
    mine |= changed
    new.setdefault("metadata", {})["managedFields"] = rebuild(
        current, sets, (manager, "Update", subresource, api_version, mine)
    )
