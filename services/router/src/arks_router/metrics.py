"""The router's Prometheus metrics, registered on the service's own registry.

Labels are namespaces, endpoint (model) names, backend names, status codes and limit
types: never a token, a token hash or a token's name (per-tenant accounting is the
accountant's job, and unbounded label sets are an outage of their own). Children are
cached per label tuple because `labels()` costs a dict lookup and a lock per call.
"""

from __future__ import annotations

from functools import lru_cache

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OVERHEAD_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "arks_router_requests",
            "Requests answered, by endpoint and HTTP status.",
            ["namespace", "endpoint", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "arks_router_request_duration_seconds",
            "Time from request to the last byte of the response.",
            ["namespace", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.overhead = Histogram(
            "arks_router_overhead_seconds",
            "Time the router added: the request's duration minus the engine's part.",
            buckets=OVERHEAD_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            "arks_router_time_to_first_token_seconds",
            "Time from request to the first byte of the engine's response body.",
            ["namespace", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "arks_router_tokens",
            "Tokens served, by kind (prompt, completion) and source (engine, estimated).",
            ["namespace", "endpoint", "kind", "source"],
            registry=registry,
        )
        self.rejections = Counter(
            "arks_router_rejections",
            "Requests refused before reaching an engine, by reason "
            "(auth, request, model, rpm, rpd, tpm, tpd, quota, governance, no_backend).",
            ["namespace", "reason", "quota"],
            registry=registry,
        )
        self.upstream_errors = Counter(
            "arks_router_upstream_errors",
            "Failed engine attempts, by kind (connect, timeout, status, stream).",
            ["namespace", "endpoint", "backend", "kind"],
            registry=registry,
        )
        self.replica_requests = Counter(
            "arks_router_replica_requests",
            "Requests an engine answered, by backend (application) and replica (its id, or "
            "its URL when the route table names none): how the strategy spread the traffic.",
            ["namespace", "endpoint", "backend", "replica"],
            registry=registry,
        )
        self.retries = Counter(
            "arks_router_retries",
            "Requests retried on another backend before their first byte.",
            ["namespace", "endpoint"],
            registry=registry,
        )
        self.ejections = Counter(
            "arks_router_backend_ejections",
            "Backends ejected by outlier detection.",
            ["backend"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "arks_router_in_flight_requests",
            "Requests being proxied right now.",
            registry=registry,
        )
        self.load_snapshots = Counter(
            "arks_router_load_snapshots",
            "Engine load snapshots received on arks.load.>.",
            registry=registry,
        )
        self.cancelled = Counter(
            "arks_router_client_disconnects",
            "Requests whose client went away before the response ended.",
            ["namespace", "endpoint"],
            registry=registry,
        )
        self.governance_unavailable = Counter(
            "arks_router_governance_unavailable",
            "Admissions that found Redis/Valkey unavailable (then failed open or closed).",
            registry=registry,
        )
        self.usage_published = Counter(
            "arks_router_usage_published",
            "Usage events acknowledged by JetStream (live and replayed).",
            ["path"],
            registry=registry,
        )
        self.usage_spooled = Counter(
            "arks_router_usage_spooled",
            "Usage events written to the local spool because NATS was unavailable.",
            registry=registry,
        )
        self.usage_unjournaled = Counter(
            "arks_router_usage_unjournaled",
            "Usage events that could not be written to the journal (disk full, read-only): "
            "a crash before they are published would lose them.",
            registry=registry,
        )
        self.spool_pending = Gauge(
            "arks_router_usage_spool_pending_bytes",
            "Bytes of spooled usage events not yet replayed.",
            registry=registry,
        )

    @lru_cache(maxsize=4096)  # noqa: B019 - one metrics object per process, lives forever
    def request_children(
        self, namespace: str, endpoint: str
    ) -> tuple[Histogram, Histogram, Counter, Counter]:
        """duration, ttft, prompt-token and completion-token children of an endpoint."""
        return (
            self.duration.labels(namespace, endpoint),
            self.ttft.labels(namespace, endpoint),
            self.tokens.labels(namespace, endpoint, "prompt", "engine"),
            self.tokens.labels(namespace, endpoint, "completion", "engine"),
        )
