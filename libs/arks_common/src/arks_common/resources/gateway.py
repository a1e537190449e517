"""Gateway API v1 types embedded in ArksEndpoint: ParentReference, HTTPRouteMatch, HTTPBackendRef.

They keep the Gateway API's own validation (patterns, lengths, enums, defaults) so that an
endpoint valid here renders an HTTPRoute the API server accepts. The CEL rules the Gateway
API attaches to path matches and backend references are checked in Python and emitted
unchanged into our CRD, so both platforms refuse the same input. Backend `filters` are
passed through verbatim (HTTPRouteFilter objects), as the router does not interpret them.
"""

from __future__ import annotations

import re
from typing import Any, Literal, Self

from pydantic import ConfigDict, Field, JsonValue, field_validator, model_validator

from arks_common.resources.meta import ArksBaseModel, Int32, KubeObjectList

GROUP_PATTERN = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
KIND_PATTERN = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"
NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SECTION_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
HEADER_NAME_PATTERN = r"^[A-Za-z0-9!#$%&'*+\-.^_\x60|~]+$"
_PATH_CHARS = re.compile(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$")

MAX_MATCHES = 16
MAX_BACKENDS = 16

# Gateway API v1.2 CEL rules (HTTPPathMatch and HTTPBackendRef), the same ones upstream Arks
# ships; `_check_path` and `HTTPBackendRef._port_for_service` implement them in Python.


def _rule(rule: str, message: str) -> JsonValue:
    return {"message": message, "rule": rule}


_PREFIX = "(self.type in ['Exact','PathPrefix']) ? "
_WHEN = " when type one of ['Exact', 'PathPrefix']"

PATH_MATCH_RULES: list[JsonValue] = [
    _rule(
        _PREFIX + "self.value.startsWith('/') : true",
        "value must be an absolute path and start with '/'" + _WHEN,
    ),
    *(
        _rule(
            _PREFIX + f"!self.value.contains('{bad}') : true", f"must not contain '{bad}'" + _WHEN
        )
        for bad in ("//", "/./", "/../", "%2f", "%2F", "#")
    ),
    *(
        _rule(
            _PREFIX + f"!self.value.endsWith('{bad}') : true", f"must not end with '{bad}'" + _WHEN
        )
        for bad in ("/..", "/.")
    ),
    _rule(
        "self.type in ['Exact','PathPrefix'] || self.type == 'RegularExpression'",
        "type must be one of ['Exact', 'PathPrefix', 'RegularExpression']",
    ),
    _rule(
        _PREFIX + f'self.value.matches(r"""{_PATH_CHARS.pattern}""") : true',
        f"must only contain valid characters (matching {_PATH_CHARS.pattern}) for types "
        "['Exact', 'PathPrefix']",
    ),
]
BACKEND_REF_RULES: list[JsonValue] = [
    _rule(
        "(size(self.group) == 0 && self.kind == 'Service') ? has(self.port) : true",
        "Must have port for Service reference",
    )
]

PathMatchType = Literal["Exact", "PathPrefix", "RegularExpression"]
HeaderMatchType = Literal["Exact", "RegularExpression"]
HTTPMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]


class ParentReference(ArksBaseModel):
    """The Gateway (or other parent) the endpoint's HTTPRoute attaches to."""

    group: str = Field(
        "gateway.networking.k8s.io",
        max_length=253,
        pattern=GROUP_PATTERN,
        description="API group of the parent; gateway.networking.k8s.io when omitted.",
    )
    kind: str = Field(
        "Gateway", min_length=1, max_length=63, pattern=KIND_PATTERN, description="Parent kind."
    )
    name: str = Field(min_length=1, max_length=253, description="Parent name.")
    namespace: str | None = Field(
        None,
        min_length=1,
        max_length=63,
        pattern=NAMESPACE_PATTERN,
        description="Parent namespace; the endpoint's namespace when omitted.",
    )
    section_name: str | None = Field(
        None,
        min_length=1,
        max_length=253,
        pattern=SECTION_NAME_PATTERN,
        description="Listener name within the parent.",
    )
    port: Int32 | None = Field(None, ge=1, le=65535, description="Listener port.")


class HTTPPathMatch(ArksBaseModel):
    """How the request path is matched."""

    type: PathMatchType = Field("PathPrefix", description="Exact, PathPrefix or RegularExpression.")
    value: str = Field("/", max_length=1024, description="Path (or regular expression).")

    @model_validator(mode="after")
    def _check_path(self) -> Self:
        if self.type == "RegularExpression":
            return self
        value = self.value
        if not value.startswith("/"):
            raise ValueError(f"value: must be an absolute path starting with '/' (got {value!r})")
        for bad in ("//", "/./", "/../", "%2f", "%2F", "#"):
            if bad in value:
                raise ValueError(f"value: must not contain {bad!r} (got {value!r})")
        for bad in ("/..", "/."):
            if value.endswith(bad):
                raise ValueError(f"value: must not end with {bad!r} (got {value!r})")
        if not _PATH_CHARS.match(value):
            raise ValueError(f"value: contains characters not allowed in a path (got {value!r})")
        return self


class HTTPHeaderMatch(ArksBaseModel):
    """A request header that must match."""

    type: HeaderMatchType = Field("Exact", description="Exact or RegularExpression.")
    name: str = Field(
        min_length=1, max_length=256, pattern=HEADER_NAME_PATTERN, description="Header name."
    )
    value: str = Field(min_length=1, max_length=4096, description="Header value.")


class HTTPQueryParamMatch(ArksBaseModel):
    """A query parameter that must match."""

    type: HeaderMatchType = Field("Exact", description="Exact or RegularExpression.")
    name: str = Field(
        min_length=1, max_length=256, pattern=HEADER_NAME_PATTERN, description="Parameter name."
    )
    value: str = Field(min_length=1, max_length=1024, description="Parameter value.")


def _unique_names(items: list[Any], what: str) -> None:
    seen: set[str] = set()
    for item in items:
        if item.name in seen:
            raise ValueError(f"{what} {item.name!r} is listed twice")
        seen.add(item.name)


_LIST_MAP_BY_NAME: dict[str, JsonValue] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["name"],
}


class HTTPRouteMatch(ArksBaseModel):
    """One request match of the endpoint's route (all given conditions must hold)."""

    path: HTTPPathMatch = Field(
        default_factory=HTTPPathMatch,
        description="Path match; a prefix match on '/' when omitted.",
        json_schema_extra={
            "default": {"type": "PathPrefix", "value": "/"},
            "x-kubernetes-validations": PATH_MATCH_RULES,
        },
    )
    headers: list[HTTPHeaderMatch] | None = Field(
        None,
        max_length=16,
        description="Header matches (ANDed).",
        json_schema_extra=_LIST_MAP_BY_NAME,
    )
    query_params: list[HTTPQueryParamMatch] | None = Field(
        None,
        max_length=16,
        description="Query parameter matches (ANDed).",
        json_schema_extra=_LIST_MAP_BY_NAME,
    )
    method: HTTPMethod | None = Field(None, description="HTTP method to match.")

    @field_validator("headers", "query_params")
    @classmethod
    def _no_duplicates(cls, items: list[Any] | None) -> list[Any] | None:
        if items:
            _unique_names(items, "name")
        return items


class HTTPBackendRef(ArksBaseModel):
    """A weighted backend of the endpoint's route (a Service unless kind/group say otherwise)."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": BACKEND_REF_RULES})

    group: str = Field(
        "", max_length=253, pattern=GROUP_PATTERN, description="API group; core when empty."
    )
    kind: str = Field(
        "Service", min_length=1, max_length=63, pattern=KIND_PATTERN, description="Backend kind."
    )
    name: str = Field(min_length=1, max_length=253, description="Backend name.")
    namespace: str | None = Field(
        None,
        min_length=1,
        max_length=63,
        pattern=NAMESPACE_PATTERN,
        description="Backend namespace; the endpoint's namespace when omitted.",
    )
    port: Int32 | None = Field(
        None, ge=1, le=65535, description="Destination port; required for a Service."
    )
    weight: Int32 = Field(
        1, ge=0, le=1000000, description="Relative share of requests (0 disables this backend)."
    )
    filters: KubeObjectList | None = Field(
        None,
        max_length=16,
        description="Gateway API HTTPRouteFilters, passed through to the HTTPRoute verbatim.",
    )

    @model_validator(mode="after")
    def _port_for_service(self) -> Self:
        if self.group == "" and self.kind == "Service" and self.port is None:
            raise ValueError("port: required for a Service backend")
        return self

    @property
    def is_service(self) -> bool:
        """Whether this backend is a core Service."""
        return self.group == "" and self.kind == "Service"
