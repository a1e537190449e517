"""Versioned message contracts: events on NATS subjects and the values kept in NATS KV.

Every event has a stable `id`, which doubles as the JetStream `Nats-Msg-Id`, so a
producer that publishes the same fact twice (a retry, a replayed spool) is
deduplicated by the stream, and a consumer can apply it idempotently.

Wire format: the model as JSON (by field name) in the message body, plus headers
`Arks-Event-Type` and `Arks-Event-Version`. Consumers ignore fields they do not know,
so a producer may add optional fields without a version bump; removing or changing
the meaning of a field requires a new VERSION and a new model registered beside the
old one.

KV values (route tables, token grants, quota specs, quota state) follow the same
rules and are registered too, though they travel as KV entries rather than events.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from arks_common.errors import PermanentError

TYPE_HEADER = "Arks-Event-Type"
VERSION_HEADER = "Arks-Event-Version"
MSG_ID_HEADER = "Nats-Msg-Id"

DecimalStr = Annotated[Decimal, PlainSerializer(lambda d: format(d, "f"), return_type=str)]
"""Money travels as a decimal string so no float ever touches it."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    """Base of every versioned message."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    TYPE: ClassVar[str]
    """Stable type name on the wire (the class name of the first version)."""
    VERSION: ClassVar[int] = 1

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_bytes(cls: type[_M], data: bytes) -> _M:
        return cls.model_validate_json(data)

    def headers(self) -> dict[str, str]:
        return {TYPE_HEADER: self.TYPE, VERSION_HEADER: str(self.VERSION)}


_M = TypeVar("_M", bound=Message)


class Event(Message):
    """A fact that happened, with a stable id used for deduplication."""

    id: str = Field(min_length=1, description="Stable id; the JetStream Nats-Msg-Id.")
    occurred_at: datetime = Field(default_factory=utcnow)

    def headers(self) -> dict[str, str]:
        return {**super().headers(), MSG_ID_HEADER: self.id}


# --------------------------------------------------------------------------- usage & billing


class Outcome(StrEnum):
    SUCCESS = "success"
    CLIENT_ERROR = "client_error"
    UPSTREAM_ERROR = "upstream_error"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"
    """The router stopped mid-request (killed, crashed): billed from its journal by the
    next owner of its spool slot, for the tokens delivered until then."""


class UsageRecorded(Event):
    """One finished request (successful, failed or cancelled), published by the router.

    `id` is the request id. Token counts come from the engine's `usage` when it sent
    one (`usage_source="engine"`), otherwise from the router's own count of what was
    streamed (`"estimated"`, e.g. a broken stream, or outcome `interrupted`: the
    router died mid-stream and this is the last progress record of its journal).
    """

    TYPE: ClassVar[str] = "UsageRecorded"

    namespace: str
    token_name: str = Field(description="ArksToken name (never the secret).")
    endpoint: str = Field(description="ArksEndpoint name: the model the client asked for.")
    backend: str = Field("", description="The backend that served it, '' if none did.")
    replica: str = Field(
        "", description="The backend's replica that served it (pod or process), '' if unknown."
    )
    model: str = Field("", description="Model name the engine reported.")
    quota: str | None = Field(None, description="ArksQuota charged, if the grant has one.")
    quota_period: str | None = Field(None, description="Period id the reservation was made in.")
    prompt_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)
    cached_tokens: int = Field(0, ge=0)
    reserved_tokens: int = Field(0, ge=0, description="Tokens reserved at admission.")
    outcome: Outcome = Outcome.SUCCESS
    status_code: int = 200
    usage_source: Literal["engine", "estimated", "none"] = "engine"
    ttft_ms: float | None = Field(None, ge=0)
    duration_ms: float = Field(0.0, ge=0)
    stream: bool = False
    started_at: datetime = Field(default_factory=utcnow)

    @property
    def request_id(self) -> str:
        return self.id

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class BillingRecord(Event):
    """A priced usage record for billing systems; `id` is `bill-<request id>`."""

    TYPE: ClassVar[str] = "BillingRecord"

    request_id: str
    namespace: str
    token_name: str
    endpoint: str
    model: str = ""
    quota: str | None = None
    period: str = "lifetime"
    prompt_tokens: int = Field(0, ge=0)
    cached_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)
    currency: str = "USD"
    price_version: str = Field("", description="Version of the price list applied ('' if none).")
    amount_prompt: DecimalStr = Decimal(0)
    amount_cached: DecimalStr = Decimal(0)
    amount_completion: DecimalStr = Decimal(0)
    amount_total: DecimalStr = Decimal(0)
    charged_nanos: int = Field(0, ge=0, description="amount_total in nano units, as counted.")
    outcome: Outcome = Outcome.SUCCESS

    @staticmethod
    def id_for(request_id: str) -> str:
        return f"bill-{request_id}"


class QuotaStateChanged(Event):
    """A quota crossed into or out of exhaustion (or its period reset / limit changed)."""

    TYPE: ClassVar[str] = "QuotaStateChanged"

    namespace: str
    quota: str
    period: str
    exhausted: bool
    exhausted_kinds: list[str] = Field(default_factory=list)
    used: dict[str, int] = Field(default_factory=dict)
    limits: dict[str, int] = Field(default_factory=dict)
    reason: Literal["exhausted", "reset", "limit_changed", "restored"] = "exhausted"


# --------------------------------------------------------------------------- control plane


class ConditionSnapshot(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    type: str
    status: str
    reason: str = ""
    message: str = ""


class ResourceStatusChanged(Event):
    """The reconciler changed a resource's status; the history `arks describe` shows."""

    TYPE: ClassVar[str] = "ResourceStatusChanged"

    kind: str
    namespace: str
    name: str
    generation: int = 0
    observed_generation: int = 0
    phase: str = ""
    event_type: Literal["Normal", "Warning"] = "Normal"
    reason: str = ""
    message: str = ""
    conditions: list[ConditionSnapshot] = Field(default_factory=list)


class ModelCacheJob(Event):
    """A request to make a model available in the cache (`id` = job id)."""

    TYPE: ClassVar[str] = "ModelCacheJob"

    namespace: str
    model_name: str = Field(description="The ArksModel name.")
    repo_id: str
    repo_type: Literal["model", "dataset"] = "model"
    revision: str | None = None
    allow_patterns: list[str] | None = None
    ignore_patterns: list[str] | None = None
    token_secret: str | None = Field(None, description="Secret name holding HF_TOKEN.")
    cache_root: str | None = None
    pin: bool = False
    preload: bool = False


class ModelCacheProgress(Event):
    TYPE: ClassVar[str] = "ModelCacheProgress"

    job_id: str
    namespace: str
    model_name: str
    repo_id: str
    revision: str | None = None
    bytes_done: int = 0
    bytes_total: int = 0
    files_done: int = 0
    files_total: int = 0
    rate_bytes_per_s: float = 0.0


class ModelCacheErrorKind(StrEnum):
    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"
    GATED = "gated"
    REVISION_NOT_FOUND = "revision_not_found"
    NETWORK = "network"
    DISK_FULL = "disk_full"
    OTHER = "other"


class ModelCacheResult(Event):
    TYPE: ClassVar[str] = "ModelCacheResult"

    job_id: str
    namespace: str
    model_name: str
    repo_id: str
    revision: str | None = None
    ok: bool
    commit: str | None = None
    path: str | None = None
    size_bytes: int = 0
    files: int = 0
    error_kind: ModelCacheErrorKind | None = None
    message: str = ""
    retryable: bool = False
    preload_seconds: float | None = None


class ReplicaLoad(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    replica: str
    url: str
    ready: bool = True
    running: int = 0
    waiting: int = 0
    kv_cache_usage: float = Field(0.0, ge=0.0, description="Fraction 0..1 of KV cache in use.")
    prefix_cache_hit_rate: float | None = None


class EngineLoadSnapshot(Event):
    """Load of an application's replicas, scraped from the engines about once a second."""

    TYPE: ClassVar[str] = "EngineLoadSnapshot"

    namespace: str
    application: str
    replicas: list[ReplicaLoad] = Field(default_factory=list)


# --------------------------------------------------------------------------- KV values


class HeaderMatch(BaseModel):
    """A header (or query parameter) condition of a route match (Gateway API semantics)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: str
    value: str


class PathMatch(BaseModel):
    """One `matchConfigs` entry of an endpoint (a Gateway API HTTPRouteMatch): the path,
    and optionally the method, headers and query parameters that must hold as well.

    `method`, `headers` and `query_params` were added after version 1 of RouteTable; a
    router that does not know them ignores them (matches on the path alone)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: str = "/"
    method: str | None = None
    headers: list[HeaderMatch] = Field(default_factory=list)
    query_params: list[HeaderMatch] = Field(default_factory=list)


class RouteBackend(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str = Field(description="Application name, or Service name of a static route.")
    url: str = Field(description="Base URL, e.g. http://127.0.0.1:8001")
    weight: int = Field(1, ge=0)
    source: Literal["discovered", "static"] = "discovered"
    application: str | None = None
    replica: str | None = Field(None, description="Replica id for per-replica backends.")


class RouteTable(Message):
    """KV `arks-routes`, key `<ns>.<endpoint>`: where an endpoint's traffic may go."""

    TYPE: ClassVar[str] = "RouteTable"

    namespace: str
    endpoint: str
    strategy: str | None = None
    session_header: str = "x-session-id"
    matches: list[PathMatch] = Field(default_factory=lambda: [PathMatch()])
    backends: list[RouteBackend] = Field(default_factory=list)
    generation: int = 0
    created_at: datetime | None = Field(
        None, description="The endpoint's metadata.creationTimestamp (None: not published)."
    )


class RateLimitValue(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["rpm", "rpd", "tpm", "tpd"]
    value: int = Field(ge=0)


class EndpointGrant(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    endpoint: str
    rate_limits: list[RateLimitValue] = Field(default_factory=list)
    quota: str | None = None


class TokenGrant(Message):
    """KV `arks-tokens`, key = sha256 hex of the bearer token: what the token may do."""

    TYPE: ClassVar[str] = "TokenGrant"

    namespace: str
    token_name: str
    grants: list[EndpointGrant] = Field(default_factory=list)

    def grant_for(self, endpoint: str) -> EndpointGrant | None:
        return next((g for g in self.grants if g.endpoint == endpoint), None)


class QuotaLimit(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["prompt", "response", "total"]
    value: int = Field(ge=0)


class EndpointPrice(BaseModel):
    """Prices per million tokens for one endpoint."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    endpoint: str
    prompt: DecimalStr = Decimal(0)
    cached_prompt: DecimalStr = Decimal(0)
    completion: DecimalStr = Decimal(0)


class QuotaSpec(Message):
    """KV `arks-quotas`, key `<ns>.<quota>`: limits, money budget and prices of a quota."""

    TYPE: ClassVar[str] = "QuotaSpec"

    namespace: str
    name: str
    limits: list[QuotaLimit] = Field(default_factory=list)
    budget_nanos: int | None = Field(None, ge=0, description="Money budget in nano units.")
    currency: str = "USD"
    prices: list[EndpointPrice] = Field(default_factory=list)
    price_version: str = ""
    reset_period: Literal["lifetime", "daily", "monthly"] = "lifetime"

    def price_for(self, endpoint: str) -> EndpointPrice | None:
        return next((p for p in self.prices if p.endpoint == endpoint), None)


# --------------------------------------------------------------------------- registry

MESSAGE_TYPES: dict[tuple[str, int], type[Message]] = {
    (cls.TYPE, cls.VERSION): cls
    for cls in (
        UsageRecorded,
        BillingRecord,
        QuotaStateChanged,
        ResourceStatusChanged,
        ModelCacheJob,
        ModelCacheProgress,
        ModelCacheResult,
        EngineLoadSnapshot,
        RouteTable,
        TokenGrant,
        QuotaSpec,
    )
}


def decode(headers: dict[str, str] | None, data: bytes) -> Message:
    """Decode a message by its type headers; a bad message is a PermanentError."""
    headers = headers or {}
    kind = headers.get(TYPE_HEADER)
    try:
        version = int(headers.get(VERSION_HEADER, "1"))
    except ValueError as exc:
        raise PermanentError(f"bad {VERSION_HEADER} header") from exc
    cls = MESSAGE_TYPES.get((kind or "", version))
    if cls is None:
        raise PermanentError(f"unknown message type {kind!r} version {version}")
    return decode_as(cls, data)


def decode_as(cls: type[_M], data: bytes) -> _M:
    """Decode a message whose type the subject already fixes."""
    try:
        return cls.from_bytes(data)
    except ValueError as exc:
        raise PermanentError(f"invalid {cls.__name__}: {exc}") from exc


def as_json_dict(message: Message) -> dict[str, Any]:
    return message.model_dump(mode="json")
