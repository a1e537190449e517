"""Label selectors on lists and watches, in the string syntax of `?labelSelector=`.

Supported: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` (exists) and `!k`
(absent), comma-separated (all must hold). A selector that does not parse is the
client's error (400).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arks_devcluster.errors import ApiError

Obj = dict[str, Any]

_REQUIREMENT = re.compile(
    r"^\s*(?P<neg>!)?(?P<key>[A-Za-z0-9._/-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9._-]*)|\s+(?P<set>in|notin)\s*\((?P<values>[^)]*)\))?\s*$"
)


def _split_selector(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return parts


@dataclass(frozen=True)
class _Requirement:
    key: str
    op: str
    """eq, ne, in, notin, exists, absent"""
    values: frozenset[str] = frozenset()

    def holds(self, labels: dict[str, str]) -> bool:
        value = labels.get(self.key)
        if self.op in ("eq", "in"):
            return value in self.values
        if self.op in ("ne", "notin"):
            return value not in self.values
        if self.op == "exists":
            return self.key in labels
        return self.key not in labels


def label_matcher(selector: str | None) -> Callable[[Obj], bool]:
    """A predicate on objects for a `labelSelector` string (None or "": everything)."""
    requirements: list[_Requirement] = []
    for part in _split_selector(selector or ""):
        m = _REQUIREMENT.match(part)
        if m is None:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {part!r}")
        key = m["key"]
        if m["op"] in ("=", "=="):
            requirements.append(_Requirement(key, "eq", frozenset([m["value"]])))
        elif m["op"] == "!=":
            requirements.append(_Requirement(key, "ne", frozenset([m["value"]])))
        elif m["set"]:
            values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
            requirements.append(_Requirement(key, m["set"], values))
        else:
            requirements.append(_Requirement(key, "absent" if m["neg"] else "exists"))

    def matches(obj: Obj) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(r.holds(labels) for r in requirements)

    return matches


# ----------------------------------------------------------------------------- fields
_COMMON_FIELDS = ("metadata.name", "metadata.namespace")
_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)
EXTRA_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "events"): _EVENT_FIELDS,
    ("", "pods"): (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.phase",
        "status.podIP",
    ),
    ("", "namespaces"): ("status.phase",),
    ("", "secrets"): ("type",),
    ("", "nodes"): ("spec.unschedulable",),
    ("batch", "jobs"): ("status.successful",),
}
_FIELD = re.compile(r"^\s*(?P<key>[A-Za-z0-9._-]+)\s*(?P<op>==|!=|=)\s*(?P<value>[^,]*?)\s*$")


def _field_value(obj: Obj, path: str) -> str:
    if path == "source":
        return str((obj.get("source") or {}).get("component", ""))
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def field_matcher(
    selector: str | None, group: str, plural: str, describe: str
) -> Callable[[Obj], bool]:
    """A predicate for a `fieldSelector`: `metadata.name` and `metadata.namespace` for every
    kind, a few more for some built-in kinds (as upstream); any other field is 400."""
    allowed = _COMMON_FIELDS + EXTRA_FIELDS.get((group, plural), ())
    requirements: list[tuple[str, bool, str]] = []
    for part in (selector or "").split(","):
        if not part.strip():
            continue
        m = _FIELD.match(part)
        if m is None:
            raise ApiError(400, "BadRequest", f"invalid field selector: {part!r}")
        if m["key"] not in allowed:
            raise ApiError(
                400,
                "BadRequest",
                f'Unable to find "{describe}" that match label selector "", field selector '
                f'"{selector}": field label not supported: {m["key"]}',
            )
        requirements.append((m["key"], m["op"] != "!=", m["value"]))

    def matches(obj: Obj) -> bool:
        return all((_field_value(obj, k) == v) == eq for k, eq, v in requirements)

    return matches
