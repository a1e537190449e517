"""`arks describe`: one object in detail, its conditions and its recent events.

The layout follows `kubectl describe` for custom resources: identity first, then spec
and status as indented `Title Case:` fields, then a conditions table and the events.
Events come from the platform (`backends.Resources.events`): on the local stack the
object's `ResourceStatusChanged` history, on Kubernetes its core/v1 Events (with a From
column, and kubectl's `(x3 over 5m)` for repeated ones). An ArksToken's secret is never
shown: describe prints its sha256 prefix instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from arks_cli.printing import NONE, age_of, human_age, render_table
from arks_common.resources import KindInfo, hash_token

Obj = dict[str, Any]
_WORD_BREAK = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@dataclass(frozen=True)
class EventLine:
    """One row of the Events table, whichever platform recorded it."""

    type: str
    reason: str
    at: datetime | None
    message: str
    source: str = ""
    """Who reported it (Kubernetes Events' `source.component`); '' on the local stack."""
    count: int = 1
    first_at: datetime | None = None


def title(key: str) -> str:
    """`readyReplicas` -> `Ready Replicas`, as kubectl describe prints field names."""
    if "." in key or "/" in key:
        return key  # label-like keys (nvidia.com/gpu) stay as they are
    words = _WORD_BREAK.sub(" ", key)
    return words[:1].upper() + words[1:]


def _scalar(value: Any) -> str:
    if value is None:
        return NONE
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fields(value: Any, indent: int) -> list[str]:
    """kubectl-describe lines for a mapping or list, `indent` spaces deep."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        scalars = [(k, v) for k, v in value.items() if not isinstance(v, dict | list) or not v]
        width = max((len(title(k)) + 1 for k, _ in scalars), default=0) + 2
        for key, item in value.items():
            label = f"{title(key)}:"
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{label}")
                lines.extend(_fields(item, indent + 2))
            else:
                shown = NONE if isinstance(item, dict | list) else _scalar(item)
                lines.append(f"{pad}{label.ljust(width)}{shown}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list):
                lines.extend(_fields(item, indent))
            else:
                lines.append(f"{pad}{_scalar(item)}")
    return lines


def _map_lines(label: str, mapping: dict[str, str] | None, width: int) -> list[str]:
    items = [f"{k}={v}" for k, v in sorted((mapping or {}).items())] or [NONE]
    first, *rest = items
    return [f"{label.ljust(width)}{first}", *(f"{' ' * width}{item}" for item in rest)]


def _redacted_spec(info: KindInfo, spec: Obj) -> Obj:
    if info.kind != "ArksToken" or not isinstance(spec.get("token"), str):
        return spec
    digest = hash_token(spec["token"])
    return {**spec, "token": f"<hidden> (sha256 {digest[:12]}...)"}


def _conditions_table(conditions: Sequence[Obj], now: datetime) -> list[str]:
    if not conditions:
        return [f"Conditions:  {NONE}"]
    rows = [
        [
            str(c.get("type", "")),
            str(c.get("status", "")),
            str(c.get("reason") or ""),
            age_of(c.get("lastTransitionTime"), now),
            str(c.get("message") or ""),
        ]
        for c in conditions
    ]
    table = render_table(["Type", "Status", "Reason", "Age", "Message"], rows)
    return ["Conditions:", *("  " + line for line in table.splitlines())]


def _age(at: datetime | None, now: datetime) -> str:
    return human_age((now - at.astimezone(UTC)).total_seconds()) if at else "<unknown>"


def _event_age(event: EventLine, now: datetime) -> str:
    """kubectl's Age of an event: `5m`, or `5m (x3 over 20m)` when it repeated."""
    age = _age(event.at, now)
    if event.count > 1 and event.first_at is not None:
        return f"{age} (x{event.count} over {_age(event.first_at, now)})"
    return age


def _events_table(history: Sequence[EventLine], now: datetime) -> list[str]:
    if not history:
        return [f"Events:  {NONE}"]
    with_source = any(event.source for event in history)
    headers = ["Type", "Reason", "Age", *(["From"] if with_source else []), "Message"]
    rows = [
        [
            event.type,
            event.reason,
            _event_age(event, now),
            *([event.source] if with_source else []),
            event.message,
        ]
        for event in history
    ]
    table = render_table(headers, rows)
    return ["Events:", *("  " + line for line in table.splitlines())]


def render(
    info: KindInfo,
    obj: Obj,
    history: Sequence[EventLine],
    now: datetime | None = None,
) -> str:
    """The whole `describe` text of one object."""
    now = now or datetime.now(UTC)
    meta = obj.get("metadata") or {}
    width = len("Annotations:  ")
    lines = [
        f"{'Name:'.ljust(width)}{meta.get('name', '')}",
        f"{'Namespace:'.ljust(width)}{meta.get('namespace', 'default')}",
        *_map_lines("Labels:", meta.get("labels"), width),
        *_map_lines("Annotations:", meta.get("annotations"), width),
        f"{'API Version:'.ljust(width)}{obj.get('apiVersion', '')}",
        f"{'Kind:'.ljust(width)}{obj.get('kind', info.kind)}",
        "Metadata:",
    ]
    shown_meta = {
        key: meta[key]
        for key in (
            "creationTimestamp",
            "deletionTimestamp",
            "finalizers",
            "generation",
            "resourceVersion",
            "uid",
        )
        if key in meta
    }
    if "creationTimestamp" in meta:
        shown_meta["age"] = age_of(meta["creationTimestamp"], now)
    lines.extend(_fields(shown_meta, 2))
    spec = obj.get("spec") or {}
    lines.append("Spec:")
    lines.extend(_fields(_redacted_spec(info, spec), 2) or [f"  {NONE}"])
    status = dict(obj.get("status") or {})
    conditions = status.pop("conditions", None) or []
    if status:
        lines.append("Status:")
        lines.extend(_fields(status, 2))
    else:
        lines.append(f"Status:  {NONE}")
    lines.extend(_conditions_table(conditions, now))
    lines.extend(_events_table(history, now))
    return "\n".join(lines) + "\n"
