"""Structural schemas (a CRD's openAPIV3Schema): validation of custom resources, after
pruning and defaulting (`pruning`), as the real server does it.

- Validation: type (`x-kubernetes-int-or-string`, `nullable`), enum, pattern, format
  (a few), string length, numeric bounds (OpenAPI 3.0 exclusive flags), item and property
  counts, required, `x-kubernetes-list-type` set/map uniqueness, and the value
  validations a structural schema allows (allOf, anyOf, oneOf, not). Each failure is a
  cause `{reason, message, field}` with the real reasons (FieldValueRequired,
  FieldValueInvalid, FieldValueNotSupported, FieldValueTypeInvalid, FieldValueTooLong,
  FieldValueTooMany, FieldValueDuplicate); CEL rules are evaluated by `cel_rules`.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

Obj = dict[str, Any]
Cause = dict[str, str]
_TOP = ("apiVersion", "kind", "metadata")


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    return json.dumps(value)


# ----------------------------------------------------------------------------- validation
@lru_cache(maxsize=4096)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_FORMATS = {
    "date-time": re.compile(
        r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
    ),
    "date": re.compile(r"^\d{4}-\d{2}-\d{2}$"),
    "uuid": re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"),
    "hostname": re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"),
}


def _type_ok(value: Any, schema: Obj) -> bool:
    if value is None:
        return bool(schema.get("nullable"))
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    kind = schema.get("type")
    if kind is None:
        return True
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return True


def _cause(reason: str, path: str, message: str) -> Cause:
    return {"reason": reason, "message": message, "field": path}


def validate(value: Any, schema: Obj, path: str = "") -> list[Cause]:
    """Every schema violation of `value` (CEL rules aside), as causes."""
    if not _type_ok(value, schema):
        wanted = "integer or string" if schema.get("x-kubernetes-int-or-string") else schema["type"]
        return [
            _cause(
                "FieldValueTypeInvalid",
                path,
                f"Invalid value: {_show(value)}: {path or 'body'} in body must be of type "
                f"{wanted}: {_show(value)}",
            )
        ]
    if value is None:
        return []
    causes: list[Cause] = []
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(json.dumps(v) for v in schema["enum"])
        causes.append(
            _cause(
                "FieldValueNotSupported",
                path,
                f"Unsupported value: {_show(value)}: supported values: {supported}",
            )
        )
    if isinstance(value, str):
        causes += _string(value, schema, path)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        causes += _number(value, schema, path)
    elif isinstance(value, list):
        causes += _array(value, schema, path)
    elif isinstance(value, dict):
        causes += _object(value, schema, path)
    for sub in schema.get("allOf") or []:
        causes += validate(value, sub, path)
    if schema.get("anyOf") and not any(not validate(value, s, path) for s in schema["anyOf"]):
        first = validate(value, schema["anyOf"][0], path)
        causes += first or [_cause("FieldValueInvalid", path, "Invalid value: must match anyOf")]
    if schema.get("oneOf"):
        matching = sum(1 for s in schema["oneOf"] if not validate(value, s, path))
        if matching != 1:
            causes.append(
                _cause("FieldValueInvalid", path, "Invalid value: must match exactly one oneOf")
            )
    if "not" in schema and not validate(value, schema["not"], path):
        causes.append(_cause("FieldValueInvalid", path, "Invalid value: must not match"))
    return causes


def _string(value: str, schema: Obj, path: str) -> list[Cause]:
    causes = []
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        causes.append(
            _cause(
                "FieldValueTooLong",
                path,
                f"Too long: may not be more than {schema['maxLength']} bytes",
            )
        )
    if "minLength" in schema and len(value) < schema["minLength"]:
        causes.append(
            _cause(
                "FieldValueInvalid",
                path,
                f"Invalid value: {_show(value)}: {path} in body should be at least "
                f"{schema['minLength']} chars long",
            )
        )
    if "pattern" in schema and not _regex(schema["pattern"]).search(value):
        causes.append(
            _cause(
                "FieldValueInvalid",
                path,
                f"Invalid value: {_show(value)}: {path} in body should match '{schema['pattern']}'",
            )
        )
    fmt = _FORMATS.get(schema.get("format", ""))
    if fmt is not None and not fmt.match(value):
        causes.append(
            _cause(
                "FieldValueInvalid",
                path,
                f"Invalid value: {_show(value)}: {path} in body must be of type "
                f"{schema['format']}: {_show(value)}",
            )
        )
    return causes


def _number(value: float, schema: Obj, path: str) -> list[Cause]:
    causes = []
    if "minimum" in schema:
        low, exclusive = schema["minimum"], schema.get("exclusiveMinimum") is True
        if value < low or (exclusive and value == low):
            word = "greater than" if exclusive else "greater than or equal to"
            causes.append(
                _cause(
                    "FieldValueInvalid",
                    path,
                    f"Invalid value: {_show(value)}: {path} in body should be {word} {low}",
                )
            )
    if "maximum" in schema:
        high, exclusive = schema["maximum"], schema.get("exclusiveMaximum") is True
        if value > high or (exclusive and value == high):
            word = "less than" if exclusive else "less than or equal to"
            causes.append(
                _cause(
                    "FieldValueInvalid",
                    path,
                    f"Invalid value: {_show(value)}: {path} in body should be {word} {high}",
                )
            )
    return causes


def _array(value: list[Any], schema: Obj, path: str) -> list[Cause]:
    causes = []
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        causes.append(
            _cause(
                "FieldValueTooMany",
                path,
                f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
            )
        )
    if "minItems" in schema and len(value) < schema["minItems"]:
        causes.append(
            _cause(
                "FieldValueInvalid",
                path,
                f"Invalid value: {len(value)}: {path} in body should have at least "
                f"{schema['minItems']} items",
            )
        )
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set" or schema.get("uniqueItems"):
        seen: list[Any] = []
        for index, item in enumerate(value):
            if item in seen:
                causes.append(
                    _cause(
                        "FieldValueDuplicate", f"{path}[{index}]", f"Duplicate value: {_show(item)}"
                    )
                )
            seen.append(item)
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen_keys: list[Any] = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                continue
            key = {k: item.get(k) for k in keys}
            if key in seen_keys:
                causes.append(
                    _cause(
                        "FieldValueDuplicate",
                        f"{path}[{index}]",
                        f"Duplicate value: {json.dumps(key, sort_keys=True)}",
                    )
                )
            seen_keys.append(key)
    items = schema.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            causes += validate(item, items, f"{path}[{index}]")
    return causes


def _object(value: Obj, schema: Obj, path: str) -> list[Cause]:
    causes = []
    for required in schema.get("required") or []:
        if required not in value:
            causes.append(_cause("FieldValueRequired", _child(path, required), "Required value"))
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        causes.append(
            _cause(
                "FieldValueTooMany",
                path,
                f"Too many: {len(value)}: must have at most {schema['maxProperties']} items",
            )
        )
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        causes.append(
            _cause(
                "FieldValueInvalid",
                path,
                f"Invalid value: {len(value)}: {path} in body should have at least "
                f"{schema['minProperties']} properties",
            )
        )
    properties = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for key, item in value.items():
        if not path and key in _TOP:
            continue
        if key in properties:
            causes += validate(item, properties[key], _child(path, key))
        elif isinstance(additional, dict):
            causes += validate(item, additional, _child(path, key))
    return causes
