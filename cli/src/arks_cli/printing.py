"""How `get` and `describe` show objects: kubectl's tables, ages and output formats.

Table columns are the CRDs' `additionalPrinterColumns` (from `arks_common.crds`), so
the CLI and `kubectl get` show the same thing: NAME, then every priority-0 column, plus
the priority-1 ones with `-o wide`. Values come from each column's JSONPath; a missing
value prints `<none>` and a date prints as kubectl's human age (`5s`, `3m20s`, `2h`,
`4d`). Tables are left-aligned with three spaces between columns, as kubectl's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import yaml

from arks_common import crds
from arks_common.resources import GROUP, KindInfo

Obj = dict[str, Any]
NONE = "<none>"
_PATH_PART = re.compile(
    r"\.([^.\[\]]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_]+)\s*==\s*(?:\"([^\"]*)\"|'([^']*)')\)\]"
)


@dataclass(frozen=True)
class Column:
    """One printer column of a CRD."""

    name: str
    json_path: str
    type: str
    priority: int

    @property
    def header(self) -> str:
        return self.name.upper()


@cache
def printer_columns(kind: str) -> tuple[Column, ...]:
    """Every printer column of a kind's CRD, in CRD order."""
    version = crds.crd_for(kind)["spec"]["versions"][0]
    return tuple(
        Column(
            name=str(c["name"]),
            json_path=str(c["jsonPath"]),
            type=str(c.get("type", "string")),
            priority=int(c.get("priority", 0)),
        )
        for c in version.get("additionalPrinterColumns", [])
    )


def columns_for(kind: str, *, wide: bool) -> list[Column]:
    """The columns `get` shows: priority 0, plus priority 1 with `-o wide`."""
    return [c for c in printer_columns(kind) if c.priority == 0 or wide]


def lookup(obj: Any, json_path: str) -> Any:
    """The value at a printer column's JSONPath: fields (`.spec.model.name`), indexes
    (`.status.routes[0].name`) and equality filters
    (`.status.quotaStatus[?(@.type=="total")].used`, the first match, as kubectl shows)."""
    value = obj
    for match in _PATH_PART.finditer(json_path):
        key, index, field_name, double, single = match.groups()
        if key is not None:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        elif index is not None:
            position = int(index)
            if not isinstance(value, list) or position >= len(value):
                return None
            value = value[position]
        else:
            wanted = double if double is not None else single
            if not isinstance(value, list):
                return None
            value = next(
                (
                    item
                    for item in value
                    if isinstance(item, dict) and str(item.get(field_name)) == wanted
                ),
                None,
            )
            if value is None:
                return None
    return value


def parse_timestamp(value: str) -> datetime | None:
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def human_age(seconds: float) -> str:
    """kubectl's HumanDuration: `45s`, `3m20s`, `25m`, `3h10m`, `23h`, `2d3h`, `100d`, `2y`."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y{days}d" if days else f"{years}y"
    return f"{hours // 24 // 365}y"


def age_of(timestamp: Any, now: datetime | None = None) -> str:
    """The age of an RFC 3339 timestamp, or `<unknown>`."""
    if not isinstance(timestamp, str):
        return "<unknown>"
    stamp = parse_timestamp(timestamp)
    if stamp is None:
        return "<unknown>"
    return human_age(((now or datetime.now(UTC)) - stamp).total_seconds())


def cell(value: Any, type_: str, now: datetime | None = None) -> str:
    """A value as kubectl prints it in a table cell."""
    if value is None:
        return "<unknown>" if type_ == "date" else NONE
    if type_ == "date":
        return age_of(value, now)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def qualified_name(info: KindInfo, name: str) -> str:
    """`arksapplication.arks.ai/app-qwen`, what `-o name` and `apply` print."""
    return f"{info.singular}.{GROUP}/{name}"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, three spaces apart, no trailing spaces."""
    widths = [len(h) for h in headers]
    for row in rows:
        for index, value in enumerate(row):
            widths[index] = max(widths[index], len(value))
    lines = []
    for row in (headers, *rows):
        padded = [value.ljust(widths[i]) for i, value in enumerate(row)]
        lines.append("   ".join(padded).rstrip())
    return "\n".join(lines)


def object_table(
    info: KindInfo,
    objects: Sequence[Obj],
    *,
    wide: bool,
    all_namespaces: bool,
    qualify: bool,
    now: datetime | None = None,
) -> str:
    """The `get` table of objects of one kind."""
    columns = columns_for(info.kind, wide=wide)
    headers = (["NAMESPACE"] if all_namespaces else []) + ["NAME"] + [c.header for c in columns]
    rows = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name", ""))
        row = [str(meta.get("namespace", "default"))] if all_namespaces else []
        row.append(qualified_name(info, name) if qualify else name)
        row.extend(cell(lookup(obj, c.json_path), c.type, now) for c in columns)
        rows.append(row)
    return render_table(headers, rows)


def as_list(objects: Sequence[Obj]) -> Obj:
    """kubectl's `kind: List` wrapper for several objects."""
    return {"apiVersion": "v1", "items": list(objects), "kind": "List"}


def to_yaml(value: Any) -> str:
    text: str = yaml.safe_dump(value, sort_keys=False, default_flow_style=False)
    return text


def to_json(value: Any) -> str:
    return json.dumps(value, indent=4)
