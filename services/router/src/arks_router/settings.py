"""The router's settings: one typed object built once in `main()` and passed down.

Every field is settable by environment variable with the `ARKS_` prefix and `__`
between groups, e.g. `ARKS_HTTP__PORT=8080`, `ARKS_REDIS__FAIL_MODE=open`,
`ARKS_GOVERNANCE__DEFAULT_MAX_TOKENS=1024`, `ARKS_USAGE__SPOOL_DIR=/var/lib/arks`.
Invalid values fail validation at start-up, never on the request path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from arks_common import ledger
from arks_common.settings import RedisSettings, ServiceSettings


class HttpSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Address the OpenAI API listens on.")
    port: int = Field(8080, ge=0, le=65535, description="Port of the API (0: any free port).")
    max_body_bytes: int = Field(
        16 * 1024 * 1024, gt=0, description="Largest request body accepted (413 beyond)."
    )


class RouterRedisSettings(RedisSettings):
    fail_mode: Literal["closed", "open"] = Field(
        "closed",
        description="When Redis/Valkey is unreachable: 'closed' answers 503 (limits hold), "
        "'open' admits without charging limits (usage is still published and billed).",
    )
    breaker_seconds: float = Field(
        1.0,
        gt=0,
        description="After a Redis failure, skip Redis for this long before probing again.",
    )


class GovernanceSettings(BaseModel):
    bytes_per_token: float = Field(
        4.0, gt=0, description="Prompt estimate: UTF-8 bytes of prompt text per token."
    )
    tokens_per_message: int = Field(
        7, ge=0, description="Chat template overhead per message (ChatML counted as text: 7)."
    )
    tokens_per_request: int = Field(
        6, ge=0, description="Chat template overhead of the assistant turn it opens."
    )
    default_max_tokens: int = Field(
        1024,
        ge=0,
        description="Completion tokens reserved for a chat request that sets no max_tokens.",
    )
    completions_default_max_tokens: int = Field(
        16, ge=0, description="Completion tokens reserved for /v1/completions without max_tokens."
    )
    max_reserved_tokens: int = Field(
        131072, gt=0, description="Cap of one request's reservation (prompt + completion)."
    )
    minute_buckets: int = Field(
        60, ge=1, le=600, description="Sub-windows of the sliding minute (rpm/tpm) window."
    )
    day_buckets: int = Field(
        288, ge=1, le=1440, description="Sub-windows of the sliding day (rpd/tpd) window."
    )
    reservation_timeout_seconds: float = Field(
        900.0,
        gt=0,
        description="A quota reservation may be swept by the accountant this long (plus the "
        "ledger's grace) after admission if its usage event never arrives (a backstop: "
        "the reservations of a router that died are released when its lease lapses).",
    )
    reserved_retry_after_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="Retry-After of a 429 rate_limit_exceeded answered when a quota is full "
        "only of reservations in flight.",
    )
    lease_refresh_seconds: float = Field(
        3.0,
        gt=0,
        le=ledger.ROUTER_LEASE_SECONDS / 2,
        description="Seconds between refreshes of this router's lease on its reservations "
        f"(the lease lapses {ledger.ROUTER_LEASE_SECONDS} s after the last one).",
    )


class UpstreamSettings(BaseModel):
    connect_timeout: float = Field(2.0, gt=0, description="Seconds to connect to an engine.")
    read_timeout: float = Field(
        300.0, gt=0, description="Seconds without a byte from the engine before giving up."
    )
    max_connections: int = Field(4096, gt=0, description="Upstream connection pool size.")
    keepalive_seconds: float = Field(
        3.0, gt=0, description="Idle upstream connections are closed after this long."
    )
    retry_statuses: list[int] = Field(
        default_factory=lambda: [500, 502, 503, 504],
        description="Statuses retried once on another backend (before any byte is sent).",
    )
    error_body_bytes: int = Field(
        65536, gt=0, description="How much of an upstream error body is read."
    )


class RoutingSettings(BaseModel):
    default_strategy: str = Field(
        "auto",
        description="Strategy when the route table names none: auto (weighted when the "
        "weights differ, else leastLoad), weighted, leastLoad, prefixAffinity, sessionAffinity.",
    )
    eject_after_failures: int = Field(
        3, ge=1, description="Consecutive failures that eject a backend."
    )
    eject_seconds: float = Field(30.0, gt=0, description="First ejection length.")
    max_eject_seconds: float = Field(300.0, gt=0, description="Longest ejection.")
    load_stale_seconds: float = Field(
        5.0, gt=0, description="Engine load snapshots older than this are ignored."
    )
    prefix_block_chars: int = Field(
        256, ge=16, description="Prefix affinity: characters of prompt per hashed block."
    )
    prefix_max_blocks: int = Field(
        128, ge=1, description="Prefix affinity: most leading blocks considered."
    )
    prefix_index_size: int = Field(
        100_000, ge=1, description="Prefix affinity: block hashes remembered (LRU)."
    )
    bounded_load_factor: float = Field(
        1.25,
        ge=1.0,
        description="Affinity strategies skip a backend loaded above factor x (mean + 1).",
    )


class UsageSettings(BaseModel):
    spool_dir: Path = Field(
        Path(".arks/router-spool"),
        description="Durable spool of usage events while NATS is unreachable.",
    )
    publish_timeout: float = Field(2.0, gt=0, description="Seconds to wait for a stream ack.")
    batch_size: int = Field(256, ge=1, description="Most events published concurrently.")
    queue_size: int = Field(
        100_000, ge=1, description="Events waiting in memory before they go to the spool."
    )
    replay_interval: float = Field(0.5, gt=0, description="Seconds between spool replay tries.")
    progress_interval: float = Field(
        1.0,
        gt=0,
        le=10,
        description="Seconds between journal records of the tokens an open stream has "
        "delivered (what a router killed mid-stream is billed from).",
    )


class RouterSettings(ServiceSettings):
    """Everything `arks-router` can be told."""

    http: HttpSettings = HttpSettings()
    redis: RouterRedisSettings = RouterRedisSettings()
    governance: GovernanceSettings = GovernanceSettings()
    upstream: UpstreamSettings = UpstreamSettings()
    routing: RoutingSettings = RoutingSettings()
    usage: UsageSettings = UsageSettings()

    @model_validator(mode="after")
    def _check(self) -> RouterSettings:
        from arks_router.routing import registry

        if self.routing.default_strategy not in registry.names():
            raise ValueError(f"routing.default_strategy must be one of {sorted(registry.names())}")
        if self.routing.max_eject_seconds < self.routing.eject_seconds:
            raise ValueError("routing.max_eject_seconds must be >= routing.eject_seconds")
        return self
