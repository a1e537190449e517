"""One request's state as it moves through the router: what was asked, who asked,
what was admitted and reserved, where it went and how it ended.

An `Exchange` is created per request by the proxy and filled in by admission,
forwarding and accounting in turn; it never outlives its request.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from arks_common.events import EndpointGrant, Outcome
from arks_router.catalog import Endpoint
from arks_router.estimating import ApiKind, Estimate
from arks_router.governing import Admission
from arks_router.metering import Usage
from arks_router.routing.base import Candidate

UsageSource = Literal["engine", "estimated", "none"]

REQUEST_ID_KEY = "arks.request_id"
"""Where the request-id middleware leaves the id in the ASGI scope."""
API_KIND_KEY = "arks.api_kind"
"""Where `surface` leaves the ApiKind of the route a forwarded request takes."""


def new_request_id() -> str:
    return f"req-{uuid.uuid4().hex}"


def request_id_of(scope: MutableMapping[str, Any]) -> str:
    found = scope.get(REQUEST_ID_KEY)
    if isinstance(found, str):
        return found
    made = new_request_id()
    scope[REQUEST_ID_KEY] = made
    return made


def header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """First value of a header (names in ASGI scopes are already lower-case)."""
    for key, value in headers:
        if key == name:
            return value
    return None


@dataclass(slots=True)
class Exchange:
    request_id: str
    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    kind: ApiKind
    started: float = field(default_factory=time.perf_counter)

    # who and what
    namespace: str = ""
    token_name: str = ""
    endpoint: Endpoint | None = None
    grant: EndpointGrant | None = None
    body: bytes = b""
    stream: bool = False
    strip_usage: bool = False
    prompt: str = ""

    # governance
    estimate: Estimate = field(default_factory=lambda: Estimate(0, 0))
    quota: str | None = None
    quota_period: str | None = None
    admission: Admission | None = None

    # routing and the engine's answer
    ranked: list[Candidate] = field(default_factory=list)
    prefix_blocks: list[bytes] = field(default_factory=list)
    backend: Candidate | None = None
    status: int = 0
    response_started: bool = False
    response_finished: bool = False
    """The last body message was handed to the server: a disconnect now is normal."""
    upstream_started: float | None = None
    upstream_ended: float | None = None
    first_byte_at: float | None = None

    # the outcome
    outcome: Outcome = Outcome.SUCCESS
    usage: Usage | None = None
    usage_source: UsageSource = "none"
    model: str = ""

    @property
    def endpoint_name(self) -> str:
        return self.endpoint.name if self.endpoint is not None else ""
