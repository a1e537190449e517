"""Structural schemas (a CRD's openAPIV3Schema): pruning and defaulting of custom
resources, as the real server does them before validating (`schema`).

- Pruning: fields a schema does not declare are dropped (kept under
  `x-kubernetes-preserve-unknown-fields: true` and `x-kubernetes-embedded-resource`'s
  apiVersion/kind/metadata); `apiVersion`, `kind` and `metadata` of the object are kept.
  `prune` returns the dropped paths, so a `fieldValidation=Strict` write (kubectl's
  default) is refused with 400 "strict decoding error: unknown field ...", as upstream.
- Defaulting: a missing property with a `default` gets it, recursively (inside the
  default too), in objects, array items and map values.
"""

from __future__ import annotations

import copy
from typing import Any

Obj = dict[str, Any]
_TOP = ("apiVersion", "kind", "metadata")


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def prune(value: Any, schema: Obj, path: str = "", *, root: bool = True) -> list[str]:
    """Drop undeclared fields in place; return their paths."""
    dropped: list[str] = []
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return dropped
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        embedded = schema.get("x-kubernetes-embedded-resource")
        for key in list(value):
            if (root or embedded) and key in _TOP:
                continue
            if properties is not None and key in properties:
                dropped += prune(value[key], properties[key], _child(path, key), root=False)
            elif isinstance(additional, dict):
                dropped += prune(value[key], additional, _child(path, key), root=False)
            elif additional is True or schema.get("x-kubernetes-preserve-unknown-fields"):
                continue
            elif properties is not None or additional is False or "type" in schema:
                del value[key]
                dropped.append(_child(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            dropped += prune(item, schema["items"], f"{path}[{index}]", root=False)
    return dropped


def apply_defaults(value: Any, schema: Obj) -> None:
    """Fill missing properties that have a `default`, in place."""
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                apply_defaults(value[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key in value:
                if key not in (schema.get("properties") or {}):
                    apply_defaults(value[key], additional)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(item, schema["items"])
