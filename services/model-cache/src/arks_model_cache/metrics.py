"""Prometheus metrics of the model-cache service (on its health port's /metrics)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from arks_common.events import ModelCacheResult


@dataclass(frozen=True)
class CacheMetrics:
    jobs: Counter
    job_seconds: Histogram
    cache_bytes: Gauge
    evicted: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> CacheMetrics:
        return cls(
            jobs=Counter(
                "arks_model_cache_jobs",
                "Model cache jobs by outcome (ok or the error kind).",
                ["outcome"],
                registry=registry,
            ),
            job_seconds=Histogram(
                "arks_model_cache_job_seconds",
                "Time from taking a job to publishing its result.",
                buckets=(0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, float("inf")),
                registry=registry,
            ),
            cache_bytes=Gauge(
                "arks_model_cache_bytes",
                "Bytes in the cache (blobs, partial downloads included).",
                ["root"],
                registry=registry,
            ),
            evicted=Counter(
                "arks_model_cache_evicted_snapshots",
                "Snapshots evicted to respect the size limit.",
                registry=registry,
            ),
        )

    def observe(self, result: ModelCacheResult, seconds: float) -> None:
        outcome = "ok" if result.ok else (result.error_kind or "other")
        self.jobs.labels(outcome=str(outcome)).inc()
        self.job_seconds.observe(seconds)
