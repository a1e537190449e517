"""Every error the router answers with, in OpenAI's envelope.

    {"error": {"message": "...", "type": "...", "param": null, "code": "..."}}

`ApiError` carries the HTTP status, the OpenAI `type`, a stable machine `code` and
extra headers (Retry-After, x-ratelimit-*). It is an `ArksError`: 429 and 5xx answers
are retryable (with the Retry-After delay), 4xx ones are permanent. The catalog of
codes is in docs/router.md. Messages never contain the bearer token or any other
request secret, and echo a client's model name or path at most `SHOWN_CHARS` long.

Every error also carries upstream Arks' diagnostic header for its case
(`x-error-token`, `x-error-request-body-processing`, `x-error-no-model-in-request`,
`x-error-no-model-backends`, `x-error-rate-limit`, `x-error-quota`; see
`UPSTREAM_HEADERS`) for clients written against upstream. Their value is `true`, or
the model name for `x-error-no-model-backends` as upstream sends it (when it is plain
ASCII); never a token (upstream echoed the token in `x-error-token`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import orjson

from arks_common.errors import ArksError

Headers = Sequence[tuple[bytes, bytes]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

JSON_CONTENT_TYPE = (b"content-type", b"application/json")
SHOWN_CHARS = 256
"""Longest client-supplied name (model, path) repeated in a message."""

UPSTREAM_HEADERS: dict[str, bytes] = {
    "missing_api_key": b"x-error-token",
    "invalid_api_key": b"x-error-token",
    "model_not_permitted": b"x-error-token",
    "invalid_json": b"x-error-request-body-processing",
    "invalid_request": b"x-error-request-body-processing",
    "missing_model": b"x-error-no-model-in-request",
    "model_not_found": b"x-error-no-model-backends",
    "rate_limit_exceeded": b"x-error-rate-limit",
    "governance_unavailable": b"x-error-rate-limit",
    "insufficient_quota": b"x-error-quota",
    "quota_unavailable": b"x-error-quota",
}
_PLAIN = re.compile(r"[\x21-\x7e]{1,256}")


def shown(name: str) -> str:
    """A client-supplied name as it may appear in a message: at most SHOWN_CHARS."""
    return name if len(name) <= SHOWN_CHARS else name[: SHOWN_CHARS - 1] + "…"


class ApiError(ArksError):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        headers: Headers = (),
        retry_after: float | None = None,
        diagnostic: str = "true",
    ) -> None:
        super().__init__(message, reason=code)
        self.diagnostic = diagnostic
        self.status = status
        self.code = code
        self.type = type
        self.param = param
        self.headers = list(headers)
        self.retry_after = retry_after
        self.retryable = status == 429 or status >= 500
        self.delay = retry_after or 1.0

    def body(self) -> bytes:
        return envelope(self.message, type=self.type, code=self.code, param=self.param)

    def response_headers(self) -> list[tuple[bytes, bytes]]:
        headers = [JSON_CONTENT_TYPE, *self.headers]
        upstream = UPSTREAM_HEADERS.get(self.code)
        if upstream is not None:
            plain = _PLAIN.fullmatch(self.diagnostic) is not None
            headers.append((upstream, self.diagnostic.encode() if plain else b"true"))
        if self.retry_after is not None:
            headers.append((b"retry-after", str(max(1, round(self.retry_after + 0.499))).encode()))
        return headers


def envelope(message: str, *, type: str, code: str | int | None, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type, "param": param, "code": code}})


async def send(send: Send, error: ApiError) -> None:
    """Answer an ASGI request with `error` (before anything else was sent)."""
    body = error.body()
    headers = [*error.response_headers(), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


# ----------------------------------------------------------------------------- catalog


def missing_api_key() -> ApiError:
    return ApiError(
        401,
        "You didn't provide an API key. Send it as 'Authorization: Bearer <token>'.",
        code="missing_api_key",
        headers=[(b"www-authenticate", b'Bearer realm="arks"')],
    )


def invalid_api_key() -> ApiError:
    return ApiError(
        401,
        "Incorrect API key provided.",
        code="invalid_api_key",
        headers=[(b"www-authenticate", b'Bearer realm="arks", error="invalid_token"')],
    )


def invalid_json(detail: str) -> ApiError:
    return ApiError(400, f"The request body is not valid JSON: {detail}", code="invalid_json")


def invalid_body(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, code="invalid_request", param=param)


def missing_model() -> ApiError:
    return ApiError(400, "You must provide a model parameter.", code="missing_model", param="model")


def model_not_found(model: str) -> ApiError:
    return ApiError(
        404,
        f"The model '{shown(model)}' does not exist or you do not have access to it.",
        code="model_not_found",
        param="model",
        diagnostic=model,
    )


def model_not_permitted(model: str) -> ApiError:
    return ApiError(
        403,
        f"Your API key is not permitted to use the model '{shown(model)}'.",
        code="model_not_permitted",
        type="permission_error",
        param="model",
    )


def path_not_routed(model: str, method: str, path: str) -> ApiError:
    return ApiError(
        404,
        f"The model '{shown(model)}' does not serve {method} {path} with this request's "
        "headers and query: none of its matchConfigs matches.",
        code="path_not_routed",
        param="model",
    )


def invalid_path() -> ApiError:
    return ApiError(
        400,
        "The request path is not in normal form (percent-encoding, '.' or '..' segments, or "
        "repeated '/'): send the path exactly as the API reference writes it.",
        code="invalid_path",
    )


def unknown_route(method: str, path: str) -> ApiError:
    return ApiError(
        404,
        f"Invalid URL ({method} {shown(path)}): the router does not serve this route.",
        code="unknown_route",
    )


def method_not_allowed(method: str, path: str, allowed: Sequence[str]) -> ApiError:
    allow = ", ".join(allowed)
    return ApiError(
        405,
        f"Method {method} is not allowed on {path} (allowed: {allow}).",
        code="method_not_allowed",
        headers=[(b"allow", allow.encode())],
    )


def request_too_large(limit: int) -> ApiError:
    return ApiError(
        413, f"The request body is larger than {limit} bytes.", code="request_too_large"
    )


def no_backend(model: str) -> ApiError:
    return ApiError(
        503,
        f"No backend is available for the model '{model}'.",
        code="no_backend_available",
        type="server_error",
        retry_after=1.0,
    )


def governance_unavailable() -> ApiError:
    return ApiError(
        503,
        "Rate limits cannot be checked right now; retry shortly.",
        code="governance_unavailable",
        type="server_error",
        retry_after=1.0,
    )


def upstream_unreachable(model: str) -> ApiError:
    return ApiError(
        502,
        f"The backend of the model '{model}' could not be reached.",
        code="upstream_unreachable",
        type="server_error",
    )


def upstream_timeout(model: str) -> ApiError:
    return ApiError(
        504,
        f"The backend of the model '{model}' did not answer in time.",
        code="upstream_timeout",
        type="server_error",
    )
