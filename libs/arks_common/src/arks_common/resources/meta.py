"""Shared building blocks of the `arks.ai/v1` resource models.

The base model (camelCase JSON names, snake_case attributes, unknown fields ignored the way
a structural CRD prunes them), Kubernetes object metadata, conditions, local object
references, and the annotated scalar types whose JSON schema the CRD generator relies on
(int32/int64 formats, RFC 3339 timestamps, preserve-unknown-fields pass-through objects).

Validation failures surface as pydantic `ValidationError`s whose location names the field;
`arks_common.resources.loading` turns them into `ResourceError`s for people.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    Strict,
    WithJsonSchema,
    model_serializer,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

GROUP = "arks.ai"
VERSION = "v1"
API_VERSION: Literal["arks.ai/v1"] = "arks.ai/v1"

#: Volume name and mount path Arks reserves for the model storage in every engine pod.
MODELS_VOLUME_NAME = "models"
MODELS_MOUNT_PATH = "/models"

# RFC 1123 names, as the Kubernetes API server checks them.
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class OpenAPIFormat:
    """Annotation adding an OpenAPI `format` (int32, int64, date-time) to a field's schema."""

    format: str

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["format"] = self.format
        return schema


def _int_range(low: int, high: int, bits: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must fit in a signed {bits}-bit integer")
        return value

    return check


# Strict: Kubernetes rejects "5" where an integer is expected, so the models do too.
Int32 = Annotated[
    int, Strict(), OpenAPIFormat("int32"), AfterValidator(_int_range(_INT32_MIN, _INT32_MAX, 32))
]
Int64 = Annotated[
    int, Strict(), OpenAPIFormat("int64"), AfterValidator(_int_range(_INT64_MIN, _INT64_MAX, 64))
]
Bool = Annotated[bool, Strict()]


def _to_utc_seconds(value: datetime) -> datetime:
    # Kubernetes stores metav1.Time with second precision; truncating here keeps a status
    # written by us equal to the one read back, so reconcilers see no phantom changes.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


def _format_timestamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


#: An RFC 3339 timestamp in UTC with second precision ("2026-01-14T10:00:00Z").
Timestamp = Annotated[
    datetime,
    AfterValidator(_to_utc_seconds),
    PlainSerializer(_format_timestamp, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]

_PRESERVE: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}

#: A Kubernetes core object passed through verbatim (resources, affinity, a probe, ...).
#: Its schema in the CRD is an object that keeps unknown fields: the API server (or
#: kubernetes-validate on rendered pods) checks it where it is used, not here.
KubeObject = Annotated[dict[str, Any], WithJsonSchema(_PRESERVE)]
KubeObjectList = list[KubeObject]
StringMap = dict[str, str]


class ArksBaseModel(BaseModel):
    """Base of every resource model: camelCase JSON, snake_case Python, unknown keys ignored.

    Ignoring unknown keys mirrors the structural-schema pruning of the API server: a stale
    upstream field such as `extraOptions` loads without error and is dropped, on both
    platforms. `arks_common.crds.unknown_fields` lists what would be dropped, for warnings.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
    )


class LocalObjectReference(ArksBaseModel):
    """A reference to an object in the same namespace, by name."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-map-type": "atomic"})

    name: str = Field(
        "",
        description="Name of the referent in the same namespace. Effectively required: an "
        "empty name refers to nothing.",
    )


class OwnerReference(ArksBaseModel):
    """An owner of an object (Kubernetes ownerReferences entry)."""

    api_version: str
    kind: str
    name: str
    uid: str
    controller: Bool | None = None
    block_owner_deletion: Bool | None = None


_EMPTY_DROPPED = ("labels", "annotations", "finalizers", "ownerReferences")


class ObjectMeta(ArksBaseModel):
    """Kubernetes object metadata; fields not modelled here (managedFields, ...) are kept."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Object name: an RFC 1123 subdomain (lower case, digits, '-', '.').",
    )
    namespace: str = Field(
        "default",
        max_length=63,
        pattern=DNS_LABEL_PATTERN,
        description="Namespace (an RFC 1123 label); 'default' when omitted.",
    )
    labels: StringMap = Field(default_factory=dict)
    annotations: StringMap = Field(default_factory=dict)
    uid: str | None = None
    resource_version: str | None = None
    generation: Int64 | None = None
    creation_timestamp: Timestamp | None = None
    deletion_timestamp: Timestamp | None = None
    finalizers: list[str] = Field(default_factory=list)
    owner_references: list[OwnerReference] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _drop_empty_collections(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # kubectl omits empty maps and lists; so do our dumps, to keep them faithful to input.
        data: dict[str, Any] = handler(self)
        for key in (*_EMPTY_DROPPED, *(to_snake(k) for k in _EMPTY_DROPPED)):
            if key in data and not data[key]:
                del data[key]
        return data


def to_snake(camel: str) -> str:
    """`ownerReferences` -> `owner_references` (for keys of a dump made without aliases)."""
    return "".join("_" + c.lower() if c.isupper() else c for c in camel)


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ArksBaseModel):
    """One aspect of an object's state, as in Kubernetes status conditions."""

    type: str = Field(min_length=1, description="Condition type, e.g. Ready.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str | None = Field(None, description="Machine-readable CamelCase reason.")
    message: str | None = Field(None, description="Human-readable detail.")
    last_transition_time: Timestamp | None = Field(
        None, description="When status last changed (UTC, second precision)."
    )
    observed_generation: Int64 | None = Field(
        None, description="metadata.generation the condition was computed from."
    )


def find_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    """The condition of the given type, or None."""
    return next((c for c in conditions if c.type == type_), None)


def set_condition(
    conditions: Sequence[Condition], condition: Condition, *, now: datetime
) -> list[Condition]:
    """A new list with `condition` replacing the one of its type (or appended).

    `lastTransitionTime` moves to `now` only when the status changes, as Kubernetes expects;
    an unchanged condition keeps its old timestamp so rewriting it is a no-op.
    """
    previous = find_condition(conditions, condition.type)
    if previous is not None and previous.status == condition.status:
        stamp = previous.last_transition_time or _to_utc_seconds(now)
    else:
        stamp = _to_utc_seconds(now)
    updated = condition.model_copy(update={"last_transition_time": stamp})
    result = [c for c in conditions if c.type != condition.type]
    index = next((i for i, c in enumerate(conditions) if c.type == condition.type), len(result))
    result.insert(index, updated)
    return result


class ResourceStatus(ArksBaseModel):
    """Fields every kind's status has: our `observedGeneration` and the conditions."""

    observed_generation: Int64 | None = Field(
        None,
        description="Arks extension: metadata.generation this status was computed from.",
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Current state, one entry per condition type."
    )

    def condition(self, type_: str) -> Condition | None:
        """The condition of the given type, or None."""
        return find_condition(self.conditions, type_)


SpecT = TypeVar("SpecT", bound=ArksBaseModel)
StatusT = TypeVar("StatusT", bound=ResourceStatus)


class ArksResource(ArksBaseModel, Generic[SpecT, StatusT]):
    """An `arks.ai/v1` object: apiVersion, kind, metadata, spec and an optional status."""

    api_version: Literal["arks.ai/v1"] = Field(
        API_VERSION, alias="apiVersion", description="Always arks.ai/v1."
    )
    kind: str
    metadata: ObjectMeta
    spec: SpecT
    status: StatusT | None = None

    @property
    def name(self) -> str:
        """metadata.name."""
        return self.metadata.name

    @property
    def namespace(self) -> str:
        """metadata.namespace."""
        return self.metadata.namespace
