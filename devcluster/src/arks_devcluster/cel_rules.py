"""`x-kubernetes-validations`: a CRD's CEL rules, evaluated with cel-python (`celpy`).

Each rule sits on a schema node and sees the value there as `self`; a transition rule
(one that mentions `oldSelf`) is evaluated only on an update where the old object has a
value at the same place (through object properties, map values and `x-kubernetes-list-
type: map` items matched by their keys, as upstream correlates them), and sees it as
`oldSelf`. A rule that is false yields a cause at the node's path (plus the rule's
`fieldPath`) with its `reason` (FieldValueInvalid by default) and `message` (or
`messageExpression`, or "failed rule: <rule>"). A rule that cannot be evaluated (e.g. it
reads a field that is absent without `has()`) is a failure too, naming the error, as the
real server reports it.

Besides CEL's standard macros and functions (has, all, exists, exists_one, filter, map,
size, matches, startsWith, endsWith, contains, duration, timestamp), the Kubernetes
string extensions the upstream CRDs use are provided: split, lowerAscii, upperAscii,
trim, join, replace, indexOf, lastIndexOf, substring. Compiled programs are cached per
rule text (the HTTPRoute CRD alone has 178 rules).
"""

from __future__ import annotations

import contextlib
import json
from functools import cache
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

Obj = dict[str, Any]
Cause = dict[str, str]
_MISSING = object()
_REASON_PREFIX = {
    "FieldValueInvalid": "Invalid value: {value}: ",
    "FieldValueForbidden": "Forbidden: ",
    "FieldValueRequired": "Required value: ",
    "FieldValueDuplicate": "Duplicate value: {value}: ",
}


def _str(value: Any) -> celtypes.StringType:
    return celtypes.StringType(value)


def _split(text: Any, sep: Any, limit: Any = -1) -> celtypes.ListType:
    parts = (
        str(text).split(str(sep)) if int(limit) < 0 else str(text).split(str(sep), int(limit) - 1)
    )
    return celtypes.ListType([_str(p) for p in parts] if int(limit) != 0 else [])


def _join(items: Any, sep: Any = "") -> celtypes.StringType:
    return _str(str(sep).join(str(i) for i in items))


def _substring(text: Any, start: Any, end: Any = None) -> celtypes.StringType:
    return _str(str(text)[int(start) : None if end is None else int(end)])


FUNCTIONS: dict[str, Any] = {
    "split": _split,
    "join": _join,
    "lowerAscii": lambda s: _str(str(s).lower()),
    "upperAscii": lambda s: _str(str(s).upper()),
    "trim": lambda s: _str(str(s).strip()),
    "replace": lambda s, old, new, n=-1: _str(str(s).replace(str(old), str(new), int(n))),
    "indexOf": lambda s, sub: celtypes.IntType(str(s).find(str(sub))),
    "lastIndexOf": lambda s, sub: celtypes.IntType(str(s).rfind(str(sub))),
    "substring": _substring,
}


_RESERVED = frozenset(
    {
        *("true", "false", "null", "in", "as", "break", "const", "continue", "else"),
        *("for", "function", "if", "import", "let", "loop", "package", "namespace"),
        *("return", "var", "void", "while"),
    }
)


def escape(name: str) -> str:
    """A property name as CEL rules spell it (Kubernetes' escaping: `namespace` is
    `__namespace__`; `__`, `.`, `-`, `/` inside names are spelled out)."""
    if name in _RESERVED:
        return f"__{name}__"
    return (
        name.replace("__", "__underscores__")
        .replace(".", "__dot__")
        .replace("-", "__dash__")
        .replace("/", "__slash__")
    )


def _escaped(value: Any) -> Any:
    if isinstance(value, dict):
        return {escape(k): _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value


def to_cel(value: Any) -> Any:
    return json_to_cel(_escaped(value))


@cache
def compile_rule(rule: str) -> celpy.Runner:
    """The program of one rule; raises celpy.CELParseError when it does not compile."""
    env = celpy.Environment()
    return env.program(env.compile(rule), functions=FUNCTIONS)


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    return json.dumps(value)


def _failure(rule: Obj, value: Any, path: str, activation: Obj, error: str | None) -> Cause:
    reason = rule.get("reason", "FieldValueInvalid")
    message = rule.get("message") or f"failed rule: {rule['rule']}"
    if error is not None:
        message = f"{error} evaluating rule: {rule['rule']}"
    elif rule.get("messageExpression"):
        # A broken messageExpression falls back to the plain message.
        with contextlib.suppress(CELEvalError, TypeError, ValueError):
            message = str(compile_rule(rule["messageExpression"]).evaluate(activation))
    field = path + rule.get("fieldPath", "")
    prefix = _REASON_PREFIX.get(reason, "").format(value=_show(value))
    return {"reason": reason, "message": prefix + message, "field": field.lstrip(".")}


def _evaluate(schema: Obj, value: Any, old: Any, path: str) -> list[Cause]:
    causes = []
    for rule in schema.get("x-kubernetes-validations") or []:
        transition = "oldSelf" in rule["rule"]
        if transition and old is _MISSING:
            continue
        activation: Obj = {"self": to_cel(value)}
        if transition:
            activation["oldSelf"] = to_cel(old)
        try:
            result: Any = compile_rule(rule["rule"]).evaluate(activation)
        except CELEvalError as exc:
            causes.append(_failure(rule, value, path, activation, str(exc.args[0])))
            continue
        if isinstance(result, CELEvalError):
            causes.append(_failure(rule, value, path, activation, str(result.args[0])))
        elif result != celtypes.BoolType(True):
            causes.append(_failure(rule, value, path, activation, None))
    return causes


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check(schema: Obj, value: Any, old: Any = _MISSING, path: str = "") -> list[Cause]:
    """Every failed rule in `value` (with `old`, the stored object, for transition rules)."""
    if value is None:
        return []
    causes = _evaluate(schema, value, old, path)
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, additional if isinstance(additional, dict) else None)
            if sub is None:
                continue
            previous = old.get(key, _MISSING) if isinstance(old, dict) else _MISSING
            causes += check(sub, item, previous, _child(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        items = schema["items"]
        keys = schema.get("x-kubernetes-list-map-keys") or []
        olds: dict[str, Any] = {}
        if schema.get("x-kubernetes-list-type") == "map" and isinstance(old, list):
            olds = {_key(o, keys): o for o in old if isinstance(o, dict)}
        for index, item in enumerate(value):
            previous = olds.get(_key(item, keys), _MISSING) if isinstance(item, dict) else _MISSING
            causes += check(items, item, previous, f"{path}[{index}]")
    return causes


def _key(item: Obj, keys: list[str]) -> str:
    return json.dumps([item.get(k) for k in keys])


def missing() -> Any:
    """The marker for "no old value" (a create)."""
    return _MISSING
