"""ArksEndpoint: a public model name routed to ready applications and static backends.

The object's name is the model name clients send. Upstream fields keep their Gateway API
validation and defaults (defaultWeight 1, one PathPrefix "/" match, backend kind Service
and weight 1, at most 16 matches and backends). Extensions: `strategy`, `sessionHeader`,
and `gatewayRef` is optional (without it no HTTPRoute is written; the Arks router still
routes the endpoint).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from arks_common.resources.gateway import (
    HEADER_NAME_PATTERN,
    MAX_BACKENDS,
    MAX_MATCHES,
    HTTPBackendRef,
    HTTPRouteMatch,
    ParentReference,
)
from arks_common.resources.meta import ArksBaseModel, ArksResource, Int32, ResourceStatus

RoutingStrategy = Literal["auto", "weighted", "leastLoad", "prefixAffinity", "sessionAffinity"]
DEFAULT_SESSION_HEADER = "x-session-id"


def _default_matches() -> list[HTTPRouteMatch]:
    return [HTTPRouteMatch()]


class ArksEndpointSpec(ArksBaseModel):
    """Desired state of an ArksEndpoint."""

    default_weight: Int32 = Field(
        1, ge=0, description="Weight of each discovered application backend."
    )
    gateway_ref: ParentReference | None = Field(
        None,
        description="Gateway the HTTPRoute attaches to (required upstream; optional here: "
        "without it no HTTPRoute is written).",
    )
    match_configs: list[HTTPRouteMatch] = Field(
        default_factory=_default_matches,
        max_length=MAX_MATCHES,
        description="Request matches of the route; one PathPrefix '/' match when omitted.",
        json_schema_extra={"default": [{"path": {"type": "PathPrefix", "value": "/"}}]},
    )
    route_configs: list[HTTPBackendRef] = Field(
        default_factory=list,
        max_length=MAX_BACKENDS,
        description="Static backends, routed besides the discovered applications.",
    )
    strategy: RoutingStrategy | None = Field(
        None,
        description="Arks extension: how the router picks a backend (auto, weighted, "
        "leastLoad, prefixAffinity, sessionAffinity); the router's default when omitted.",
    )
    session_header: str = Field(
        DEFAULT_SESSION_HEADER,
        min_length=1,
        max_length=256,
        pattern=HEADER_NAME_PATTERN,
        description="Arks extension: request header naming the session (sessionAffinity only).",
    )


class ArksEndpointStatus(ResourceStatus):
    """Observed state of an ArksEndpoint."""

    routes: list[HTTPBackendRef] = Field(
        default_factory=list,
        max_length=MAX_BACKENDS,
        description="Backends currently routed: the static ones, then the ready applications.",
    )


class ArksEndpoint(ArksResource[ArksEndpointSpec, ArksEndpointStatus]):
    """ArksEndpoint is a public model name, routed to the applications that serve it."""

    kind: Literal["ArksEndpoint"] = Field("ArksEndpoint", description="Always ArksEndpoint.")

    @property
    def model_name(self) -> str:
        """The public model name clients send: the object's name."""
        return self.metadata.name
