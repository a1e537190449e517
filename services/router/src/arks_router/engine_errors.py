"""An engine's non-2xx answer, translated into OpenAI's error envelope.

Engines answer errors in their own shapes: vLLM and the simulator send
`{"error": {"message", "type": "BadRequestError", "param", "code": 400}}` (older vLLM:
the same fields at the top level with `"object": "error"`), SGLang and FastAPI send
`{"detail": "..."}` or a list of validation errors, some send plain text. OpenAI
clients branch on `error.type` and `error.code` (`invalid_request_error`,
`context_length_exceeded`, ...), so passing `BadRequestError` / `"400"` through breaks
them. The status is kept; the message and `param` are the engine's; `type` becomes the
OpenAI type for the status unless the engine already sent an OpenAI type; `code` is
the engine's when it is a word (not a number or an exception name), else
`context_length_exceeded` for the context-length refusals of vLLM/SGLang, else
`upstream_error`. Messages are cut at `MAX_MESSAGE` characters.
"""

from __future__ import annotations

from typing import Any

import orjson

from arks_router.api_errors import ApiError

MAX_MESSAGE = 4096

OPENAI_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "rate_limit_error",
        "insufficient_quota",
        "requests",
        "tokens",
        "server_error",
    }
)
_CONTEXT_LENGTH_MARKS = ("maximum context length", "context length", "max_model_len")


def openai_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def translate(status: int, body: bytes) -> ApiError:
    """The engine's answer as our ApiError, with the engine's status."""
    message, type_, code, param = _fields(body)
    if not message:
        message = f"The backend answered with HTTP {status}."
    message = message[:MAX_MESSAGE]
    if type_ not in OPENAI_TYPES:
        type_ = openai_type(status)
    if not _is_word(code):
        lowered = message.lower()
        if status == 400 and any(mark in lowered for mark in _CONTEXT_LENGTH_MARKS):
            code = "context_length_exceeded"
        else:
            code = "upstream_error"
    return ApiError(status, message, code=code, type=type_, param=param)


def _is_word(code: str) -> bool:
    """A machine code worth keeping: not empty, not a number, not an exception name."""
    return bool(code) and not code.isdigit() and code[0].islower() and " " not in code


def _fields(body: bytes) -> tuple[str, str, str, str | None]:
    """message, type, code, param out of an OpenAI/vLLM/FastAPI error body."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace").strip(), "", "", None
    if isinstance(data, dict):
        inner = data.get("error", data)
        if isinstance(inner, dict):
            message, param = _message(inner)
            code = inner.get("code")
            given = inner.get("param")
            return (
                message,
                str(inner.get("type") or ""),
                "" if code is None else str(code),
                str(given) if given is not None else param,
            )
        if isinstance(inner, str):
            return inner, "", "", None
    return body.decode("utf-8", "replace").strip(), "", "", None


def _message(inner: dict[str, Any]) -> tuple[str, str | None]:
    """The message, and the parameter a FastAPI validation error names."""
    message = inner.get("message")
    if message:
        return str(message), None
    detail = inner.get("detail")
    if isinstance(detail, list):
        parts: list[str] = []
        param: str | None = None
        for item in detail:
            if isinstance(item, dict):
                location = [str(p) for p in item.get("loc", ()) if p != "body"]
                parts.append(f"{'.'.join(location)}: {item.get('msg', '')}".strip(": "))
                param = param or (".".join(location) or None)
        return "; ".join(parts), param
    return ("" if detail is None else str(detail)), None
