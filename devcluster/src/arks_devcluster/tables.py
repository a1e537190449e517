"""Server-side printing: the `Table` kubectl asks for (`Accept: ...;as=Table;g=meta.k8s.io`).

`kubectl get` prints what the server's Table says: a Name column, then a custom kind's
`additionalPrinterColumns` (priority > 0 columns only with `-o wide`, which kubectl
filters itself), or Age for kinds without columns. Cells come from the columns' JSONPath
(`jsonpath`): `date` columns become ages (`5m`, `3h`), a path that finds nothing leaves
the cell empty (kubectl prints `<none>`). Each row carries the object's metadata
(`PartialObjectMetadata`), as with the default `includeObject=Metadata`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from arks_devcluster import jsonpath
from arks_devcluster.kubelet import printing
from arks_devcluster.resources import ResourceType

Obj = dict[str, Any]
_NAME = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": "Name must be unique within a namespace.",
    "priority": 0,
}
_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def wants_table(accept: str) -> bool:
    return any("as=Table" in part and "g=meta.k8s.io" in part for part in accept.split(","))


def human_age(stamp: Any) -> str:
    """Kubernetes' HumanDuration of the time since `stamp` (RFC 3339)."""
    try:
        then = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = int((datetime.now(UTC) - then).total_seconds())
    if seconds < 0:
        return "<invalid>"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    return f"{days}d" if days < 365 * 2 else f"{days // 365}y"


def _columns(rtype: ResourceType) -> list[Obj]:
    return [dict(c) for c in rtype.printer_columns] or [dict(_AGE)]


def _cell(obj: Obj, column: Obj) -> Any:
    found = jsonpath.find(obj, column["jsonPath"])
    if not found:
        return None
    if column.get("type") == "date":
        return human_age(found[0])
    if len(found) == 1:
        value = found[0]
        if isinstance(value, dict | list):
            return str(value)
        return value
    return ",".join(str(v) for v in found)


def table(rtype: ResourceType, items: list[Obj], resource_version: str) -> Obj:
    builtin = None if rtype.custom else printing.printer(rtype.group, rtype.plural)
    if builtin is not None:  # pods and nodes: computed columns, as upstream's printers
        definitions, cells = [dict(_NAME), *builtin[0]], builtin[1]
        rows = [_row(obj, [obj["metadata"]["name"], *cells(obj)]) for obj in items]
        return _table(definitions, rows, resource_version)
    columns = _columns(rtype)
    definitions = [dict(_NAME)] + [
        {
            "name": c["name"],
            "type": "string" if c.get("type") == "date" else c.get("type", "string"),
            "format": c.get("format", ""),
            "description": c.get("description", ""),
            "priority": c.get("priority", 0),
        }
        for c in columns
    ]
    rows = [
        _row(obj, [obj["metadata"]["name"], *(_cell(obj, c) for c in columns)]) for obj in items
    ]
    return _table(definitions, rows, resource_version)


def _row(obj: Obj, cells: list[Any]) -> Obj:
    return {
        "cells": cells,
        "object": {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj["metadata"],
        },
    }


def _table(definitions: list[Obj], rows: list[Obj], resource_version: str) -> Obj:
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }
