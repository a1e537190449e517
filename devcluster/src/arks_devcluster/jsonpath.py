"""The JSONPath subset of printer columns: `.a.b`, `.a[0]`, `.a[*].b`, `.a['x.y']`, and
filters `[?(@.k=="v")]` / `[?(@.k!="v")]` / `[?(@.k)]`. `find` returns every value the
path reaches (none when a step is missing); a path outside the subset finds nothing,
which prints as an empty cell rather than failing the list.
"""

from __future__ import annotations

import json
import re
from typing import Any

_STEP = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_$-]+)
    |\[(?P<index>-?\d+)\]
    |\[(?P<star>\*)\]
    |\['(?P<quoted>[^']+)'\]
    |\[\?\(@\.(?P<key>[A-Za-z0-9_.-]+)\s*(?:(?P<op>==|!=)\s*(?P<value>"[^"]*"|'[^']*'|-?\d+|true|false))?\)\]""",
    re.VERBOSE,
)


def _steps(path: str) -> list[re.Match[str]] | None:
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    steps, position = [], 0
    while position < len(path):
        m = _STEP.match(path, position)
        if m is None:
            return None
        steps.append(m)
        position = m.end()
    return steps


def _get(value: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return _ABSENT
        value = value[part]
    return value


_ABSENT = object()


def find(obj: Any, path: str) -> list[Any]:
    steps = _steps(path)
    if steps is None:
        return []
    current = [obj]
    for step in steps:
        following: list[Any] = []
        for value in current:
            if step["field"] or step["quoted"]:
                key = step["field"] or step["quoted"]
                if isinstance(value, dict) and key in value:
                    following.append(value[key])
            elif step["index"] is not None:
                index = int(step["index"])
                if isinstance(value, list) and -len(value) <= index < len(value):
                    following.append(value[index])
            elif step["star"]:
                if isinstance(value, list):
                    following.extend(value)
                elif isinstance(value, dict):
                    following.extend(value.values())
            elif isinstance(value, list):
                following.extend(v for v in value if _keep(v, step))
        current = following
    return current


def _keep(item: Any, step: re.Match[str]) -> bool:
    found = _get(item, step["key"])
    if step["op"] is None:
        return found is not _ABSENT
    raw = step["value"]
    wanted = raw[1:-1] if raw[0] in "\"'" else json.loads(raw)
    return bool(found == wanted) if step["op"] == "==" else bool(found != wanted)
