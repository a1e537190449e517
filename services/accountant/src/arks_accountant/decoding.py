"""Usage events off the wire, decoded into the few fields the accountant needs.

`decode_usage()` reads a `UsageRecorded` body with orjson and checks it field by field
when it has the shape the router writes (every field of the right JSON type, both
timestamps in pydantic's own UTC form); that is the fast path, about a third of the cost
of a pydantic validation. Anything else (a missing field, an int sent as a string, a
timestamp with an offset...) goes through `UsageRecorded` validation exactly as before,
so what is accepted, what is rejected and with which reason do not change; the tests
compare both paths field by field.

Failure modes: PermanentError (the message is dead-lettered with that reason).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from arks_common import events

_OUTCOMES = frozenset(o.value for o in events.Outcome)
_SOURCES = frozenset(("engine", "estimated", "none"))
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.(?!000000)\d{6})?Z\Z")
"""pydantic's JSON form of an aware UTC datetime (what it writes is what we keep)."""


@dataclass(slots=True)
class Usage:
    """What the accountant uses of one `UsageRecorded`."""

    id: str
    occurred_at: str
    """As the event's JSON has it (pydantic's form), copied onto the billing record."""
    namespace: str
    token_name: str
    endpoint: str
    model: str
    quota: str | None
    quota_period: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    outcome: str
    started_at: datetime

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def of(cls, event: events.UsageRecorded) -> Usage:
        wire = event.model_dump(mode="json", include={"occurred_at"})
        return cls(
            id=event.id,
            occurred_at=str(wire["occurred_at"]),
            namespace=event.namespace,
            token_name=event.token_name,
            endpoint=event.endpoint,
            model=event.model,
            quota=event.quota,
            quota_period=event.quota_period,
            prompt_tokens=event.prompt_tokens,
            completion_tokens=event.completion_tokens,
            cached_tokens=event.cached_tokens,
            outcome=event.outcome.value,
            started_at=event.started_at,
        )


def decode_usage(data: bytes) -> Usage:
    """The usage event in `data`; PermanentError when it is not a valid one."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        body = None
    if type(body) is dict:
        usage = _fast(body)
        if usage is not None:
            return usage
    return Usage.of(events.decode_as(events.UsageRecorded, data))


def _count(value: object) -> bool:
    return type(value) is int and value >= 0


def _millis(value: object) -> bool:
    return (type(value) is float or type(value) is int) and value >= 0


def _text(value: object) -> bool:
    return type(value) is str


def _fast(body: dict[str, Any]) -> Usage | None:
    """The event when `body` has the canonical shape, else None (validate the slow way)."""
    get = body.get
    rid, occurred, started = get("id"), get("occurred_at"), get("started_at")
    namespace, token, endpoint = get("namespace"), get("token_name"), get("endpoint")
    model, quota, period = get("model", ""), get("quota"), get("quota_period")
    prompt, completion = get("prompt_tokens", 0), get("completion_tokens", 0)
    cached, outcome, ttft = get("cached_tokens", 0), get("outcome", "success"), get("ttft_ms")
    if not (
        type(rid) is str
        and rid
        and type(occurred) is str
        and type(started) is str
        and type(namespace) is str
        and type(token) is str
        and type(endpoint) is str
        and type(model) is str
        and _text(get("backend", ""))
        and (quota is None or type(quota) is str)
        and (period is None or type(period) is str)
        and _count(prompt)
        and _count(completion)
        and _count(cached)
        and _count(get("reserved_tokens", 0))
        and type(outcome) is str
        and outcome in _OUTCOMES
        and type(get("status_code", 200)) is int
        and _text(source := get("usage_source", "engine"))
        and source in _SOURCES
        and (ttft is None or _millis(ttft))
        and _millis(get("duration_ms", 0.0))
        and type(get("stream", False)) is bool
        and _TIMESTAMP.match(occurred)
        and _TIMESTAMP.match(started)
    ):
        return None
    try:
        datetime.fromisoformat(occurred)
        started_at = datetime.fromisoformat(started)
    except ValueError:
        return None
    return Usage(
        rid,
        occurred,
        namespace,
        token,
        endpoint,
        model,
        quota,
        period,
        prompt,
        completion,
        cached,
        outcome,
        started_at,
    )
