"""The reconciler's settings: one typed object built in `main()` and passed down.

Environment variables use the `ARKS_` prefix and `__` between groups, e.g.
`ARKS_PLATFORM=local`, `ARKS_LOCAL__DATA_DIR=.arks`, `ARKS_LOCAL__SIM_TIME_SCALE=20`,
`ARKS_SCRAPE__INTERVAL=1`, `ARKS_NATS__URL=nats://127.0.0.1:4222`. docs/reconciler.md
lists every field. Invalid values fail at start-up (pydantic), never later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, Field, field_validator, model_validator

from arks_common.settings import KubernetesSettings, ServiceSettings

PlatformName = Literal["local", "kubernetes"]


class QueueSettings(BaseModel):
    workers: int = Field(8, ge=1, description="Objects reconciled in parallel.")
    resync_period: float = Field(
        30.0, gt=0, description="Seconds between full passes over every object (safety net)."
    )
    retry_initial: float = Field(0.5, gt=0, description="First requeue delay after an error.")
    retry_max: float = Field(30.0, gt=0, description="Longest requeue delay after errors.")


class ScrapeSettings(BaseModel):
    enabled: bool = Field(True, description="Scrape engines and publish EngineLoadSnapshot.")
    interval: float = Field(1.0, gt=0, description="Seconds between scrapes of every replica.")
    timeout: float = Field(0.8, gt=0, description="Seconds allowed for one /metrics request.")


class LocalSettings(BaseModel):
    """The local platform: replicas are processes on this machine."""

    data_dir: Path = Field(Path(".arks"), description="Runtime data of the local stack.")
    log_dir: Path | None = Field(None, description="Replica logs; <data_dir>/logs when unset.")
    models_dir: Path | None = Field(
        None,
        description="Root of model storage for ArksModels without storage.localPath "
        "(<root>/<subPath> or <root>/models/<ns>/<name>); <data_dir>/models when unset.",
    )
    model_cache_root: Path | None = Field(
        None,
        description="Root of the model cache (its ARKS_CACHE__ROOT), where application "
        "leases are written; models_dir when unset.",
    )
    host: str = Field("127.0.0.1", description="Address replicas listen on.")
    port_min: int = Field(0, ge=0, le=65535, description="Lowest replica port (0: any free).")
    port_max: int = Field(0, ge=0, le=65535, description="Highest replica port (0: any free).")
    health_interval: float = Field(1.0, gt=0, description="Seconds between health checks.")
    health_timeout: float = Field(2.0, gt=0, description="Seconds allowed for /health.")
    failure_threshold: int = Field(
        3, ge=1, description="Failed health checks in a row that make a ready replica unready."
    )
    startup_timeout: float = Field(
        900.0, gt=0, description="Seconds a replica may take to become ready before a restart."
    )
    restart_backoff_initial: float = Field(1.0, gt=0, description="First restart delay.")
    restart_backoff_max: float = Field(60.0, gt=0, description="Longest restart delay.")
    restart_backoff_reset: float = Field(
        120.0, gt=0, description="Seconds of readiness after which the backoff starts over."
    )
    stop_grace: float = Field(
        10.0, gt=0, description="Seconds between SIGTERM and SIGKILL when stopping a replica."
    )
    stop_on_exit: bool = Field(
        False,
        description="Stop every replica when the reconciler shuts down gracefully. Off by "
        "default: replicas keep serving and the next reconciler adopts them (`arks up` turns "
        "it on when the whole stack stops).",
    )
    sim_command: list[str] | None = Field(
        None, description="Command of the engine simulator; arks-engine-sim when unset."
    )
    vllm_command: list[str] | None = Field(
        None, description="Command of vLLM's server; `vllm serve` when unset."
    )
    sglang_command: list[str] | None = Field(
        None, description="Command of SGLang's server; `python -m sglang.launch_server` when unset."
    )
    sim_time_scale: float | None = Field(
        None, gt=0, description="ARKS_SIM_TIME_SCALE given to simulator replicas."
    )
    sim_env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment of simulator replicas (ARKS_SIM_*)."
    )
    engine_env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment of every replica."
    )
    gpus: list[str] | None = Field(
        None,
        description="GPU ids replicas may be given (CUDA_VISIBLE_DEVICES values), e.g. "
        '["0","1"] or "0,1"; [] for none. Unset: the GPUs `nvidia-smi -L` lists, none when '
        "it is missing.",
    )

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpu_list(cls, value: object) -> object:
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _port_range(self) -> Self:
        if (self.port_min == 0) != (self.port_max == 0) or self.port_min > self.port_max:
            raise ValueError("port_min and port_max: give both (port_min <= port_max) or neither")
        return self

    @property
    def logs(self) -> Path:
        return self.log_dir or self.data_dir / "logs"

    @property
    def models_root(self) -> Path:
        return self.models_dir or self.data_dir / "models"

    @property
    def cache_root(self) -> Path:
        return self.model_cache_root or self.models_root


Driver = Literal["lws", "rbg", "deployment"]


class KubeImages(BaseModel):
    """Images of what the Kubernetes platform runs when an object names none."""

    vllm: str = Field("vllm/vllm-openai:v0.8.2", description="vLLM (upstream's default).")
    sglang: str = Field("lmsysorg/sglang:v0.4.5-cu124", description="SGLang (upstream's).")
    dynamo: str = Field("scitixai/k8s/dynamo:vllm", description="Dynamo (upstream's).")
    sim: str = Field("arks/engine-sim:dev", description="The engine simulator.")
    sglang_router: str = Field(
        "lmsysorg/sglang:v0.4.5-cu124",
        description="sglang_router of disaggregated applications without routerImage.",
    )
    model_cache: str = Field(
        "arks/model-cache:dev", description="Model download Jobs (`arks-model-cache download`)."
    )

    def runtime(self, runtime: str) -> str:
        return str(getattr(self, runtime))


class LeaseSettings(BaseModel):
    """Leader election on a coordination.k8s.io/v1 Lease."""

    name: str = Field("arks-reconciler", description="Name of the Lease.")
    namespace: str | None = Field(
        None,
        description="Namespace of the Lease; the pod's own (POD_NAMESPACE or the service "
        "account's) when unset, else `default`.",
    )
    duration: float = Field(15.0, gt=0, description="Seconds a lease holds without renewal.")
    renew_deadline: float = Field(
        10.0, gt=0, description="Seconds the leader keeps trying to renew before it gives up."
    )
    retry_period: float = Field(2.0, gt=0, description="Seconds between attempts and renewals.")
    identity: str | None = Field(None, description="Holder identity; hostname_pid when unset.")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.retry_period < self.renew_deadline < self.duration:
            raise ValueError("lease: need retry_period < renew_deadline < duration")
        return self


class KubernetesPlatformSettings(KubernetesSettings):
    """The Kubernetes platform: how to reach the API and what to render."""

    driver: Driver = Field(
        "lws", description="Workload kind of new applications: lws, rbg or deployment."
    )
    namespace: str | None = Field(
        None, description="Watch and reconcile this namespace only (unset: all namespaces)."
    )
    images: KubeImages = KubeImages()
    lease: LeaseSettings = LeaseSettings()
    router_service: str = Field(
        "arks-system/arks-router:80",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?:[0-9]{1,5}$",
        description="The Arks router's Service (`<namespace>/<name>:<port>`), the backend of "
        "the HTTPRoute of every ArksEndpoint with a gatewayRef.",
    )
    page_size: int = Field(500, ge=1, description="Objects per page when listing.")
    watch_timeout: int = Field(
        300, ge=1, description="Seconds a watch request lasts before it is renewed."
    )


class ReconcilerSettings(ServiceSettings):
    platform: PlatformName = Field("local", description="Where workloads run.")
    queue: QueueSettings = QueueSettings()
    scrape: ScrapeSettings = ScrapeSettings()
    local: LocalSettings = LocalSettings()
    kubernetes: KubernetesPlatformSettings = KubernetesPlatformSettings()
