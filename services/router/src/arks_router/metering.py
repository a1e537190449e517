"""Reading usage out of engine responses, streamed or not.

`StreamMeter` sits on an SSE stream: it forwards complete events only (an event split
across network chunks is held until its end arrives, so its usage is never lost,
which is upstream's bug), returns the bytes the client should get, remembers the last
`usage` the engine sent and counts content deltas so that a stream that breaks before
its usage chunk can still be charged approximately. To stay cheap, only the first
event and events that may carry a usage object are parsed as JSON; the others are
counted from their bytes (one data event = one delta). When
the router injected `stream_options.include_usage` itself, the usage-only chunk
(empty `choices`, a `usage` object) is removed from what the client sees.

Only complete events are forwarded; a trailing partial event is forwarded by
`finish()` as it is. Events that are not JSON pass through untouched.

`parse_body()` does the same for a whole JSON response.

The Responses API is read too: its usage is `input_tokens` / `output_tokens` (and
`input_tokens_details.cached_tokens`), in the response object, which a stream carries
in its terminal event (`response.completed`, `response.incomplete` or
`response.failed`); that event, not `[DONE]`, ends such a stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


_TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def usage_of(value: Any) -> Usage | None:
    """Chat/completions/embeddings usage, or the Responses API's."""
    if not isinstance(value, dict):
        return None
    if "prompt_tokens" in value:
        prompt, completion = value.get("prompt_tokens"), value.get("completion_tokens", 0)
        details = value.get("prompt_tokens_details")
    else:
        prompt, completion = value.get("input_tokens"), value.get("output_tokens", 0)
        details = value.get("input_tokens_details")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    cached = 0
    if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
        cached = details["cached_tokens"]
    return Usage(max(0, prompt), max(0, completion), max(0, cached))


def parse_body(body: bytes) -> tuple[Usage | None, str]:
    """Usage and model name of a complete JSON response (None, '' when absent)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, ""
    if not isinstance(data, dict):
        return None, ""
    model = data.get("model")
    return usage_of(data.get("usage")), model if isinstance(model, str) else ""


def _boundary(buf: bytes, pos: int) -> tuple[int, int]:
    """(end of the next event, length of its separator); (-1, 0) when incomplete."""
    lf = buf.find(b"\n\n", pos)
    if b"\r" not in buf:
        return lf, 2
    crlf = buf.find(b"\r\n\r\n", pos)
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, 4
    return lf, 2


class StreamMeter:
    def __init__(self, *, strip_usage: bool) -> None:
        self.strip_usage = strip_usage
        self.usage: Usage | None = None
        self.model = ""
        self.content_events = 0
        self.done = False
        self.events = 0
        self._buf = b""
        self._seen_json = False

    def feed(self, chunk: bytes) -> bytes:
        """Bytes to send to the client now (complete events, minus a stripped one)."""
        buf = self._buf + chunk if self._buf else chunk
        end = _last_boundary(buf)
        if end < 0:
            self._buf = buf
            return b""
        complete = buf[:end]
        self._buf = buf[end:]
        if self._seen_json and not _may_carry_usage(complete):
            # The common case: no usage in these events, so they need no parsing; each
            # data event but [DONE] is one content delta for the estimate.
            events = complete.count(b"data:")
            self.events += events
            if b"[DONE]" in complete:
                self.done = True
                events -= 1
            self.content_events += events
            return complete
        return self._split(complete)

    def _split(self, complete: bytes) -> bytes:
        """Inspect event by event; drop the usage chunk when asked to."""
        pos = 0
        kept = 0
        pieces: list[bytes] = []
        while True:
            end, sep = _boundary(complete, pos)
            if end < 0:
                break
            following = end + sep
            if self._inspect(complete[pos:end]):
                pieces.append(complete[kept:pos])
                kept = following
            pos = following
        if not pieces:
            return complete
        pieces.append(complete[kept:])
        return b"".join(pieces)

    def finish(self) -> bytes:
        """The unterminated tail, if any (inspected too, then passed on as is)."""
        tail, self._buf = self._buf, b""
        if tail.strip():
            self._inspect(tail)
        return tail

    @property
    def completion_estimate(self) -> int:
        return self.content_events

    def _inspect(self, event: bytes) -> bool:
        """Record what one event says; True when it must not reach the client."""
        data = _data_of(event)
        if data is None:
            return False
        self.events += 1
        if data == b"[DONE]":
            self.done = True
            return False
        if self._seen_json and not _may_carry_usage(data):
            self.content_events += 1
            return False
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(payload, dict):
            return False
        response = payload.get("response")
        if isinstance(response, dict):
            return self._response_event(payload, response)
        if not self._seen_json:
            self._seen_json = True
            model = payload.get("model")
            self.model = model if isinstance(model, str) else ""
        choices = payload.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict) and _has_content(choice):
                    self.content_events += 1
        usage = usage_of(payload.get("usage"))
        if usage is None:
            return False
        self.usage = usage
        return self.strip_usage and not choices

    def _response_event(self, payload: dict[str, Any], response: dict[str, Any]) -> bool:
        """A Responses API lifecycle event: the first names the model, the last ends
        the stream with the usage."""
        if not self._seen_json:
            self._seen_json = True
            model = response.get("model")
            self.model = model if isinstance(model, str) else ""
        if payload.get("type") in _TERMINAL_EVENTS:
            self.done = True
            usage = usage_of(response.get("usage"))
            if usage is not None:
                self.usage = usage
        return False


_USAGE_MARKS = (b'"usage":{', b'"usage": {')
_RESPONSE_MARKS = (b'"response":{', b'"response": {')


def _may_carry_usage(data: bytes) -> bool:
    """Whether events may hold a usage object or a Responses lifecycle event (which
    must be parsed); plain content deltas hold neither."""
    return (b'"usage"' in data and any(mark in data for mark in _USAGE_MARKS)) or (
        b'"response"' in data and any(mark in data for mark in _RESPONSE_MARKS)
    )


def _last_boundary(buf: bytes) -> int:
    """Offset just past the last complete event in `buf`, -1 when there is none."""
    lf = buf.rfind(b"\n\n")
    if b"\r" in buf:
        crlf = buf.rfind(b"\r\n\r\n")
        if crlf >= 0 and crlf + 4 > lf + 2:
            return crlf + 4
    return lf + 2 if lf >= 0 else -1


def _data_of(event: bytes) -> bytes | None:
    """The data field of one SSE event (multi-line data joined), None without one."""
    if event.startswith(b"data:") and b"\n" not in event:
        return event[5:].strip()
    lines = [line[5:].strip() for line in event.splitlines() if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


def _has_content(choice: dict[str, Any]) -> bool:
    delta = choice.get("delta")
    if isinstance(delta, dict):
        return bool(
            delta.get("content") or delta.get("tool_calls") or delta.get("reasoning_content")
        )
    return bool(choice.get("text"))
