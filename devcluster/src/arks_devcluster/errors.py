"""Errors as the Kubernetes API server reports them: a `Status` object with a reason and
an HTTP code.

Every handler raises `ApiError`; the REST layer turns it into the JSON `Status` a client
expects (kubectl prints `message`, client libraries read `reason` and `code`). Whether a
client should retry follows from the code as with a real server: 409 Conflict, 429 and
5xx are worth a retry, 4xx validation failures are not.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

Obj = dict[str, Any]

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


class ApiError(Exception):
    """A refused request: `code` is the HTTP status, `reason` the Status reason."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self) -> Obj:
        return status_from(self.code, self.reason, self.message, self.details)

    def response(self) -> JSONResponse:
        return JSONResponse(self.status(), self.code)


def status_from(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    """A failure `Status` (meta/v1)."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details or {},
        "code": code,
    }


def success_status(details: Obj | None = None) -> Obj:
    """The `Status` a delete answers when the object is gone at once."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details or {},
    }


def qualified(group: str, plural: str) -> str:
    """`plural.group` as the server names a resource in messages (`pods` for the core)."""
    return f"{plural}.{group}" if group else plural


def not_found(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified(group, plural)} "{name}" not found',
        {"name": name, "group": group, "kind": plural},
    )


def no_resource() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(kind: str, name: str, group: str, causes: list[Obj]) -> ApiError:
    """422 Invalid with one cause per field error, as the server's field validation says:
    `<Kind>.<group> "<name>" is invalid: <field>: <message>, ...`."""
    listed = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
    if len(causes) > 1:
        listed = f"[{listed}]"
    title = f"{kind}.{group}" if group else kind
    return ApiError(
        422,
        "Invalid",
        f'{title} "{name}" is invalid: {listed}',
        {"name": name, "group": group, "kind": kind, "causes": causes},
    )
