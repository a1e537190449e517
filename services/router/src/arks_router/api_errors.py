"""Every error the router answers with, in OpenAI's envelope.

    {"error": {"message": "...", "type": "...", "param": null, "code": "..."}}

`ApiError` carries the HTTP status, the OpenAI `type`, a stable machine `code` and
extra headers (Retry-After, x-ratelimit-*). It is an `ArksError`: 429 and 5xx answers
are retryable (with the Retry-After delay), 4xx ones are permanent. The catalog of
codes is in docs/router.md. Messages never contain the bearer token or any other
request secret.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from arks_common.errors import ArksError

Headers = Sequence[tuple[bytes, bytes]]

JSON_CONTENT_TYPE = (b"content-type", b"application/json")


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
    ) -> None:
        super().__init__(message, reason=code)
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
        if self.retry_after is not None:
            headers.append((b"retry-after", str(max(1, round(self.retry_after + 0.499))).encode()))
        return headers


def envelope(message: str, *, type: str, code: str | int | None, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type, "param": param, "code": code}})


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
        f"The model '{model}' does not exist or you do not have access to it.",
        code="model_not_found",
        param="model",
    )


def model_not_permitted(model: str) -> ApiError:
    return ApiError(
        403,
        f"Your API key is not permitted to use the model '{model}'.",
        code="model_not_permitted",
        type="permission_error",
        param="model",
    )


def path_not_routed(model: str, path: str) -> ApiError:
    return ApiError(
        404, f"The model '{model}' does not serve {path}.", code="path_not_routed", param="model"
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


def upstream_status(status: int, body: bytes) -> ApiError:
    """An engine's non-2xx answer in our envelope, keeping its status and its words."""
    message, type_, code, param = _upstream_fields(body)
    if not message:
        message = f"The backend answered with HTTP {status}."
    if not type_:
        type_ = "server_error" if status >= 500 else "invalid_request_error"
    return ApiError(status, message, code=code or "upstream_error", type=type_, param=param)


def _upstream_fields(body: bytes) -> tuple[str, str, str, str | None]:
    """message, type, code, param out of an OpenAI/vLLM/FastAPI error body."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace").strip()[:4096], "", "", None
    if isinstance(data, dict):
        inner = data.get("error", data)
        if isinstance(inner, dict):
            message = inner.get("message") or inner.get("detail") or ""
            code = inner.get("code")
            param = inner.get("param")
            return (
                str(message)[:4096],
                str(inner.get("type") or ""),
                "" if code is None else str(code),
                None if param is None else str(param),
            )
        if isinstance(inner, str):
            return inner[:4096], "", "", None
    return body.decode("utf-8", "replace").strip()[:4096], "", "", None
