"""`arks describe`: one object in detail, its conditions and its recent events.

The layout follows `kubectl describe` for custom resources: identity first, then spec
and status as indented `Title Case:` fields, then a conditions table and the events.
Events are the object's `ResourceStatusChanged` history from the
`ARKS_RESOURCE_EVENTS` stream, read with a short-lived ephemeral consumer (the stream
keeps the last 50 per object). An ArksToken's secret is never shown: describe prints
its sha256 prefix instead.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from arks_cli.printing import NONE, age_of, human_age, render_table
from arks_common import events, subjects
from arks_common.errors import PermanentError
from arks_common.messaging import Bus
from arks_common.resources import KindInfo, hash_token

Obj = dict[str, Any]
EVENT_LIMIT = 20
_WORD_BREAK = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_FETCH_TIMEOUT = 0.5


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


def _events_table(history: Sequence[events.ResourceStatusChanged], now: datetime) -> list[str]:
    if not history:
        return [f"Events:  {NONE}"]
    rows = []
    for event in history:
        age = human_age((now - event.occurred_at.astimezone(UTC)).total_seconds())
        reason = event.reason or event.phase or "StatusChanged"
        message = event.message or (f"phase {event.phase}" if event.phase else "")
        rows.append([event.event_type, reason, age, message])
    table = render_table(["Type", "Reason", "Age", "Message"], rows)
    return ["Events:", *("  " + line for line in table.splitlines())]


def render(
    info: KindInfo,
    obj: Obj,
    history: Sequence[events.ResourceStatusChanged],
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


def _matches(event: events.ResourceStatusChanged, info: KindInfo) -> bool:
    return event.kind.lower() in {info.kind.lower(), info.plural, info.singular}


async def recent_events(
    bus: Bus, info: KindInfo, namespace: str, name: str, limit: int = EVENT_LIMIT
) -> list[events.ResourceStatusChanged]:
    """The object's last `limit` status events, oldest first ([] when there are none)."""
    # "*" for the kind token: producers may spell the kind as Kind or plural.
    subject = subjects.resource_status_subject("*", namespace, name)
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.NONE,
        inactive_threshold=30.0,
        mem_storage=True,
    )
    try:
        sub = await bus.js.pull_subscribe(
            subject, stream=subjects.RESOURCE_EVENTS_STREAM, config=config
        )
    except (nats.js.errors.NotFoundError, nats.errors.Error):
        return []
    found: list[events.ResourceStatusChanged] = []
    try:
        pending = (await sub.consumer_info()).num_pending or 0
        received = 0
        while received < pending:
            try:
                batch = await sub.fetch(min(pending - received, 256), timeout=_FETCH_TIMEOUT)
            except nats.errors.TimeoutError:
                break
            received += len(batch)
            for msg in batch:
                with contextlib.suppress(PermanentError):
                    event = events.decode_as(events.ResourceStatusChanged, msg.data)
                    if _matches(event, info):
                        found.append(event)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    found.sort(key=lambda e: e.occurred_at)
    return found[-limit:]
