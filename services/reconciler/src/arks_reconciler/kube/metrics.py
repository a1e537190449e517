"""Metrics of the Kubernetes platform, computed when scraped (a collector).

| metric | type | labels |
|---|---|---|
| arks_reconciler_kube_requests_total | counter | verb, code |
| arks_reconciler_kube_relists_total | counter | resource |
| arks_reconciler_kube_cached_objects | gauge | resource |
| arks_reconciler_kube_applies_total | counter | result (applied, skipped) |
| arks_reconciler_leader | gauge | (1 while this process holds the Lease) |
| arks_reconciler_kube_events_dropped_total | counter | |
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

from arks_reconciler.kube.platform import KubernetesPlatform


class KubeCollector:
    def __init__(self, platform: KubernetesPlatform) -> None:
        self.platform = platform

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        p = self.platform
        requests = CounterMetricFamily(
            "arks_reconciler_kube_requests",
            "Kubernetes API requests by verb and HTTP status code.",
            labels=["verb", "code"],
        )
        for (verb, code), count in sorted(p.kube.requests.items()):
            requests.add_metric([verb, code], count)
        yield requests
        informers = [*p.custom_objects.informers.values(), *p.informers.values()]
        relists = CounterMetricFamily(
            "arks_reconciler_kube_relists",
            "Lists of a kind after its first (410 Gone, errors).",
            labels=["resource"],
        )
        cached = GaugeMetricFamily(
            "arks_reconciler_kube_cached_objects", "Objects in each informer.", labels=["resource"]
        )
        for informer in informers:
            relists.add_metric([informer.kind.plural], informer.relists)
            cached.add_metric([informer.kind.plural], len(informer.objects))
        yield relists
        yield cached
        applies = CounterMetricFamily(
            "arks_reconciler_kube_applies",
            "Server-side applies sent, and skipped because the cache matched.",
            labels=["result"],
        )
        applies.add_metric(["applied"], p.applier.applied)
        applies.add_metric(["skipped"], p.applier.skipped)
        yield applies
        yield GaugeMetricFamily(
            "arks_reconciler_leader",
            "1 while this reconciler leads (holds the Lease).",
            value=1.0 if p.leadership.leading.is_set() and not p.leadership.lost.is_set() else 0.0,
        )
        dropped = p.recorder.dropped if p.recorder is not None else 0
        yield CounterMetricFamily(
            "arks_reconciler_kube_events_dropped",
            "Kubernetes Events dropped because their queue was full.",
            value=dropped,
        )
