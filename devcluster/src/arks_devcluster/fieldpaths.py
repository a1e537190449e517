"""Field paths of an object, as managedFields record them (the FieldsV1 format).

A path is a tuple of elements: `f:<field>` (an object's field), `k:<json>` (an item of a
list-map, by its key fields), `v:<json>` (a value of a list-set). Lists are merged per
item only when the schema says so: `x-kubernetes-list-type: map` (with
`x-kubernetes-list-map-keys`) or `set`; otherwise a list is atomic (one leaf). Built-in
kinds have no schema here, so their lists are recognised by field name, as their Go types
declare them: containers, init/ephemeral containers, volumes, env, imagePullSecrets by
`name`, volumeMounts by `mountPath`, ports by `containerPort` (container ports) or `port`
(service ports), conditions by `type`, ownerReferences by `uid`; finalizers are a set.

`leaves` lists what an object sets (leaf values, list-map items, set values); `to_fields`
and `from_fields` convert path sets to and from FieldsV1 JSON; `get` and `remove` read and
delete at a path.
"""

from __future__ import annotations

import json
from typing import Any

Obj = dict[str, Any]
Path = tuple[str, ...]
MISSING: Any = object()

_BY_NAME = ("containers", "initContainers", "ephemeralContainers", "volumes", "env")
_BUILTIN_KEYS = {
    **{name: ["name"] for name in _BY_NAME},
    "imagePullSecrets": ["name"],
    "volumeMounts": ["mountPath"],
    "volumeDevices": ["devicePath"],
    "conditions": ["type"],
    "ownerReferences": ["uid"],
}
_BUILTIN_SETS = ("finalizers",)
# Not tracked: set by the server, or identity.
METADATA_TRACKED = ("labels", "annotations", "finalizers", "ownerReferences")


def child(schema: Obj | None, key: str) -> Obj | None:
    if not schema:
        return None
    properties = schema.get("properties") or {}
    if key in properties:
        sub: Obj = properties[key]
        return sub
    additional = schema.get("additionalProperties")
    return additional if isinstance(additional, dict) else None


def list_kind(schema: Obj | None, name: str, items: list[Any]) -> tuple[str, list[str]]:
    """("map", keys), ("set", []) or ("atomic", []) for the list in field `name`."""
    if schema and schema.get("type") == "array":
        kind = schema.get("x-kubernetes-list-type", "atomic")
        return kind, list(schema.get("x-kubernetes-list-map-keys") or [])
    if schema is None or schema.get("x-kubernetes-preserve-unknown-fields"):
        if name in _BUILTIN_SETS:
            return "set", []
        if name == "ports" and items and all(isinstance(i, dict) for i in items):
            key = "containerPort" if "containerPort" in items[0] else "port"
            return "map", [key]
        if name in _BUILTIN_KEYS and all(isinstance(i, dict) for i in items):
            return "map", _BUILTIN_KEYS[name]
    return "atomic", []


def item_schema(schema: Obj | None) -> Obj | None:
    if schema and isinstance(schema.get("items"), dict):
        items: Obj = schema["items"]
        return items
    return None


def key_of(item: Obj, keys: list[str]) -> str:
    return "k:" + json.dumps({k: item.get(k) for k in keys}, separators=(",", ":"), sort_keys=True)


def value_element(value: Any) -> str:
    return "v:" + json.dumps(value, separators=(",", ":"), sort_keys=True)


def leaves(value: Any, schema: Obj | None, prefix: Path = (), name: str = "") -> dict[Path, Any]:
    """path -> value for every field `value` sets (an object's own fields)."""
    out: dict[Path, Any] = {}
    if isinstance(value, dict) and (value or not prefix):
        for key, sub in value.items():
            if sub is None:
                continue
            out.update(leaves(sub, child(schema, key), (*prefix, f"f:{key}"), key))
        return out
    if isinstance(value, list) and value:
        kind, keys = list_kind(schema, name, value)
        if kind == "map":
            for item in value:
                path = (*prefix, key_of(item, keys))
                out[path] = {k: item.get(k) for k in keys}
                out.update(leaves(item, item_schema(schema), path, ""))
            return out
        if kind == "set":
            for item in value:
                out[(*prefix, value_element(item))] = item
            return out
    out[prefix] = value
    return out


def object_leaves(obj: Obj, schema: Obj | None, *, status: bool) -> dict[Path, Any]:
    """The tracked fields of an object: metadata labels, annotations, finalizers and
    owner references, then the spec side (`status=False`) or only `status`."""
    out: dict[Path, Any] = {}
    meta = obj.get("metadata") or {}
    if not status:
        for key in METADATA_TRACKED:
            if meta.get(key) not in (None, {}, []):
                path = ("f:metadata", f"f:{key}")
                out.update(leaves(meta[key], None, path, key))
    for key, value in obj.items():
        if key in ("apiVersion", "kind", "metadata") or value is None:
            continue
        if (key == "status") != status:
            continue
        out.update(leaves(value, child(schema, key), (f"f:{key}",), key))
    return out


def to_fields(paths: set[Path]) -> Obj:
    root: Obj = {}
    for path in sorted(paths):
        node = root
        for element in path:
            node = node.setdefault(element, {})
    for path in paths:  # an item owned itself and through its fields: "."
        node = root
        for element in path:
            node = node[element]
        if node and path and path[-1].startswith("k:"):
            node["."] = {}
    return root


def from_fields(fields: Obj, prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for element, sub in fields.items():
        if element == ".":
            out.add(prefix)
            continue
        path = (*prefix, element)
        if sub:
            out |= from_fields(sub, path)
            if path[-1].startswith("k:") and "." not in sub:
                out.add(path)
        else:
            out.add(path)
    return out


def _find(items: list[Any], element: str) -> int | None:
    kind, raw = element[:2], element[2:]
    wanted = json.loads(raw)
    for index, item in enumerate(items):
        if kind == "k:" and isinstance(item, dict):
            if all(item.get(k) == v for k, v in wanted.items()):
                return index
        elif kind == "v:" and item == wanted:
            return index
    return None


def get(obj: Any, path: Path) -> Any:
    node = obj
    for element in path:
        if element.startswith("f:"):
            if not isinstance(node, dict) or element[2:] not in node:
                return MISSING
            node = node[element[2:]]
        else:
            if not isinstance(node, list):
                return MISSING
            index = _find(node, element)
            if index is None:
                return MISSING
            node = node[index]
    return node


def remove(obj: Any, path: Path) -> None:
    if not path:
        return
    parent = get(obj, path[:-1])
    last = path[-1]
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif isinstance(parent, list):
        index = _find(parent, last)
        if index is not None:
            del parent[index]


def show(path: Path) -> str:
    """`.spec.containers[name="c"].image`, as conflicts name fields."""
    out = ""
    for element in path:
        if element.startswith("f:"):
            out += "." + element[2:]
        elif element.startswith("k:"):
            keys = json.loads(element[2:])
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
        else:
            out += f"[={element[2:]}]"
    return out
