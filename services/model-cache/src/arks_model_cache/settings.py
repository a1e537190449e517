"""Typed settings of the model cache (service and one-shot download share them).

Environment variables use the `ARKS_` prefix and `__` between groups, e.g.
`ARKS_CACHE__ROOT`, `ARKS_CACHE__SIZE_LIMIT=200GiB`, `ARKS_HUB__ENDPOINT`,
`ARKS_HUB__TOKEN`, `ARKS_HUB__PROXY`, `ARKS_HUB__OFFLINE`,
`ARKS_DOWNLOADS__MAX_CONCURRENT`, `ARKS_DOWNLOADS__PROGRESS_INTERVAL`, `ARKS_PRELOAD`.
Unset hub settings fall back to what huggingface_hub and httpx read themselves
(`HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE`, `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`).
Invalid values fail validation at start-up, never later.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ByteSize, Field, SecretStr

from arks_common.settings import ServiceSettings


class CacheSettings(BaseModel):
    root: Path = Field(
        Path(".arks/models"),
        description="Cache root (relative paths are under the working directory).",
    )
    size_limit: ByteSize | None = Field(
        None,
        description="Evict least recently used models nobody holds above this size "
        "(e.g. 200GiB); unset: no limit.",
    )
    job_lease_seconds: float = Field(
        900.0,
        ge=0,
        description="How long a finished job protects its model from eviction, so the "
        "application that asked for it can take its own lease first.",
    )
    incomplete_max_age_seconds: float = Field(
        3600.0,
        gt=0,
        description="Partial downloads (*.incomplete) untouched this long are removed.",
    )
    maintenance_interval_seconds: float = Field(
        300.0, gt=0, description="How often the service enforces the size limit."
    )


class HubSettings(BaseModel):
    endpoint: str | None = Field(
        None, description="Hub URL; default HF_ENDPOINT, else https://huggingface.co."
    )
    token: SecretStr | None = Field(
        None, description="Default Hub token; default HF_TOKEN (huggingface_hub's lookup)."
    )
    proxy: str | None = Field(
        None, description="HTTP(S) proxy URL for Hub traffic; default the *_PROXY variables."
    )
    offline: bool = Field(
        False, description="Use only what is cached (HF_HUB_OFFLINE=1 has the same effect)."
    )
    check_access: bool = Field(
        True,
        description="Ask the Hub whether the caller may read the repo even when the files "
        "are cached, so a gated or private model is never served to a token that cannot "
        "read it (costs one request per job; skipped when offline).",
    )
    etag_timeout: float = Field(10.0, gt=0, description="Seconds to wait for file metadata.")
    file_workers: int = Field(8, ge=1, le=64, description="Files downloaded in parallel.")


class DownloadSettings(BaseModel):
    max_concurrent: int = Field(
        2,
        ge=1,
        description="Downloads that transfer bytes at the same time (cache hits "
        "never wait for a slot).",
    )
    attempts: int = Field(4, ge=1, description="Tries per job for transient failures.")
    backoff_initial: float = Field(2.0, ge=0, description="Seconds before the first retry.")
    backoff_max: float = Field(60.0, ge=0, description="Cap of the exponential backoff.")
    progress_interval: float = Field(
        1.0, gt=0, description="At most one progress event per job per this many seconds."
    )


class ModelCacheSettings(ServiceSettings):
    cache: CacheSettings = CacheSettings()
    hub: HubSettings = HubSettings()
    downloads: DownloadSettings = DownloadSettings()
    preload: bool = Field(
        False, description="Warm the page cache with every model's files (jobs may ask too)."
    )
    secrets_dir: Path = Field(
        Path(".arks/secrets"),
        description="Local platform: token secrets as <dir>/<namespace>/<secret>/HF_TOKEN "
        "(the layout of a Kubernetes secret volume).",
    )
    max_concurrent_jobs: int = Field(
        8, ge=1, description="Jobs handled at once (waiting jobs and cache hits included)."
    )
