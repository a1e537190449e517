"""Typed settings shared by every service.

Each service defines one `ServiceSettings` subclass, builds it once at start-up and
passes it down; nothing reads the environment anywhere else. Environment variables
use the `ARKS_` prefix and `__` between nested groups, e.g. `ARKS_NATS__URL`,
`ARKS_REDIS__URL`, `ARKS_HEALTH__PORT`, `ARKS_TELEMETRY__LOG_LEVEL`.

Broker credentials (docs/security.md): `ARKS_NATS__USER` / `ARKS_NATS__PASSWORD` /
`ARKS_NATS__INBOX_PREFIX` and `ARKS_REDIS__USERNAME` / `ARKS_REDIS__PASSWORD`. Passwords
are `SecretStr`: they never show in reprs, logs or error messages.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class NatsSettings(BaseModel):
    url: str = Field("nats://127.0.0.1:4222", description="Comma-separated NATS server URLs.")
    connect_timeout: float = Field(2.0, gt=0, description="Seconds per connection attempt.")
    connect_deadline: float = Field(
        60.0, gt=0, description="Give up starting if NATS cannot be reached for this long."
    )
    request_timeout: float = Field(5.0, gt=0, description="Seconds for JetStream API calls.")
    user: str | None = Field(None, description="NATS user name (none: connect anonymously).")
    password: SecretStr | None = Field(None, description="Password of `user`.")
    inbox_prefix: str = Field(
        "_INBOX",
        pattern=r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$",
        description="Subject prefix of this client's reply inboxes; with per-service users "
        "each user may only subscribe below its own (`_INBOX_<user>`).",
    )

    @property
    def servers(self) -> list[str]:
        return [s.strip() for s in self.url.split(",") if s.strip()]


class RedisSettings(BaseModel):
    url: str = Field("redis://127.0.0.1:6379/0", description="Redis/Valkey URL.")
    socket_timeout: float = Field(2.0, gt=0)
    username: str | None = Field(None, description="Valkey ACL user (none: `default`).")
    password: SecretStr | None = Field(None, description="Password of `username`.")


class TelemetrySettings(BaseModel):
    log_level: str = "INFO"
    log_json: bool = Field(True, description="JSON lines on stderr (false: human-readable).")
    otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP traces endpoint; spans are only exported when set."
    )


class HealthSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port (logged).")


class ShutdownSettings(BaseModel):
    drain_timeout: float = Field(
        10.0, gt=0, description="Seconds to finish in-flight work after SIGTERM before cancelling."
    )


class KubernetesSettings(BaseModel):
    """How a service reaches the Kubernetes API (services that talk to it)."""

    kubeconfig: str | None = Field(
        None,
        description="Path of a kubeconfig; unset: the in-cluster service account when "
        "running in a pod, else the default kubeconfig (~/.kube/config or $KUBECONFIG).",
    )
    context: str | None = Field(None, description="Context of the kubeconfig to use.")
    api_url: str | None = Field(
        None,
        description="Talk to this URL without credentials (e.g. `kubectl proxy`); "
        "overrides the kubeconfig.",
    )
    request_timeout: float = Field(10.0, gt=0, description="Seconds per API request.")


class ServiceSettings(BaseSettings):
    """Base of every service's settings object."""

    model_config = SettingsConfigDict(
        env_prefix="ARKS_",
        env_nested_delimiter="__",
        extra="ignore",
        validate_default=True,
    )

    nats: NatsSettings = NatsSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    health: HealthSettings = HealthSettings()
    shutdown: ShutdownSettings = ShutdownSettings()
