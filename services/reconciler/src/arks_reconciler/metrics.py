"""The reconciler's own Prometheus metrics, served on /metrics of its health port.

Computed when scraped from the state the reconciler already keeps (a collector, not
counters on hot paths): reconciles by kind and result, the queue, KV writes, status
events, and every application's replicas by state with their restarts.

| metric | type | labels |
|---|---|---|
| arks_reconciler_reconciles_total | counter | kind, result (ok, retry, error) |
| arks_reconciler_reconcile_duration_seconds | histogram | kind |
| arks_reconciler_queue_pending | gauge | |
| arks_reconciler_kv_writes_total | counter | bucket |
| arks_reconciler_status_events_total | counter | |
| arks_reconciler_replicas | gauge | namespace, kind, name, state |
| arks_reconciler_replica_restarts | gauge | namespace, kind, name |
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from arks_reconciler.caching import APPLICATION_KINDS
from arks_reconciler.platform import ReplicaState
from arks_reconciler.reconciling import DURATION_BUCKETS, Reconciler


class ReconcilerCollector:
    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        r = self.reconciler
        reconciles = CounterMetricFamily(
            "arks_reconciler_reconciles",
            "Reconciles by kind and result.",
            labels=["kind", "result"],
        )
        for (kind, result), count in sorted(r.counts.items()):
            reconciles.add_metric([kind, result], count)
        yield reconciles
        durations = HistogramMetricFamily(
            "arks_reconciler_reconcile_duration_seconds",
            "Seconds per reconcile, by kind (or key: tokens, gc).",
            labels=["kind"],
        )
        for kind, row in sorted(r.durations.items()):
            cumulative = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, seen in zip((*DURATION_BUCKETS, float("inf")), row[:-1], strict=True):
                cumulative += seen
                buckets.append((str(bound) if bound != float("inf") else "+Inf", cumulative))
            durations.add_metric([kind], buckets, row[-1])
        yield durations
        yield GaugeMetricFamily(
            "arks_reconciler_queue_pending", "Keys waiting or running.", value=r.queue.pending()
        )
        writes = CounterMetricFamily(
            "arks_reconciler_kv_writes", "KV puts and deletes by bucket.", labels=["bucket"]
        )
        for mirror in (r.routes, r.tokens, r.quotas):
            writes.add_metric([mirror.bucket], mirror.writes)
        yield writes
        yield CounterMetricFamily(
            "arks_reconciler_status_events",
            "ResourceStatusChanged events published.",
            value=r.status.events_published,
        )
        replicas = GaugeMetricFamily(
            "arks_reconciler_replicas",
            "Replicas of each application by state.",
            labels=["namespace", "kind", "name", "state"],
        )
        restarts = GaugeMetricFamily(
            "arks_reconciler_replica_restarts",
            "Restarts of the current replicas of each application.",
            labels=["namespace", "kind", "name"],
        )
        for kind in APPLICATION_KINDS:
            for ref in r.cache.refs(kind):
                observation = r.platform.observe_workload(ref)
                if observation is None:
                    continue
                labels = [ref.namespace, ref.kind, ref.name]
                for state in ReplicaState:
                    count = sum(1 for x in observation.replicas if x.state is state)
                    replicas.add_metric([*labels, state.value], count)
                restarts.add_metric(labels, sum(x.restarts for x in observation.replicas))
        yield replicas
        yield restarts
