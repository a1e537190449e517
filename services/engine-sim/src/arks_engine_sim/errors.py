"""HTTP errors in vLLM's shape: `{"error": {"message", "type", "param", "code"}}`.

vLLM sets `code` to the HTTP status (an integer) and `type` to an exception-like name
(`BadRequestError`, `NotFoundError`, ...); OpenAI's own API uses a string or null `code`.
Clients (the openai SDK included) read `error.message`, which both shapes share.
`ApiError.retryable` follows the status: 429 and 5xx may succeed later, 4xx never.
"""

from __future__ import annotations

import orjson

from arks_common.errors import ArksError

_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    404: "NotFoundError",
    405: "MethodNotAllowed",
    413: "BadRequestError",
    429: "RateLimitError",
    500: "InternalServerError",
    501: "NotImplementedError",
    502: "BadGateway",
    503: "ServiceUnavailableError",
    504: "GatewayTimeout",
}


class ApiError(ArksError):
    """Raised while handling a request; becomes the response."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        err_type: str | None = None,
    ) -> None:
        self.err_type = err_type or _TYPES.get(status, "InternalServerError")
        super().__init__(message, reason=self.err_type)
        self.status = status
        self.param = param
        self.retryable = status == 429 or status >= 500

    def body(self) -> bytes:
        return orjson.dumps(
            {
                "error": {
                    "message": self.message,
                    "type": self.err_type,
                    "param": self.param,
                    "code": self.status,
                }
            }
        )


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param)
