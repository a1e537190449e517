"""Prometheus metrics of the accountant, registered on the service's own registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass(frozen=True)
class Metrics:
    events: Counter
    batches: Histogram
    phases: Histogram
    notices: Counter
    billing_failures: Counter
    ledger_conflicts: Counter
    restores: Counter
    swept: Counter
    lease_released: Counter
    status_writes: Counter
    ledger_entry_bytes: Histogram
    fetch_limit: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        return cls(
            events=Counter(
                "arks_accountant_events",
                "Usage events handled, by result (applied, duplicate, dead_letter, retry).",
                ["result"],
                registry=registry,
            ),
            batches=Histogram(
                "arks_accountant_batch_seconds",
                "Time to settle one fetched batch, from decode to ack decision.",
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                registry=registry,
            ),
            phases=Histogram(
                "arks_accountant_phase_seconds",
                "Time of one phase of a batch: decode (and price), settle (the script), "
                "record (the ledger), bill (billing records confirmed).",
                ["phase"],
                buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
                registry=registry,
            ),
            notices=Counter(
                "arks_accountant_quota_notices",
                "QuotaStateChanged notices published, by reason.",
                ["reason"],
                registry=registry,
            ),
            billing_failures=Counter(
                "arks_accountant_billing_publish_failures",
                "Billing records JetStream did not confirm (their events are redelivered).",
                registry=registry,
            ),
            ledger_conflicts=Counter(
                "arks_accountant_ledger_conflicts",
                "Compare-and-set conflicts writing the durable ledger (retried).",
                registry=registry,
            ),
            restores=Counter(
                "arks_accountant_restores",
                "Restores of Valkey from the durable ledger done by this process.",
                registry=registry,
            ),
            swept=Counter(
                "arks_accountant_reservations_swept",
                "Expired quota reservations released.",
                registry=registry,
            ),
            lease_released=Counter(
                "arks_accountant_reservations_lease_released",
                "Quota reservations released because their router's lease lapsed.",
                registry=registry,
            ),
            status_writes=Counter(
                "arks_accountant_status_writes",
                "ArksQuota status writes, by outcome (written, missing, failed).",
                ["outcome"],
                registry=registry,
            ),
            ledger_entry_bytes=Histogram(
                "arks_accountant_ledger_entry_bytes",
                "Size of the ledger entries written (must stay under NATS' max_payload).",
                buckets=(1 << 10, 1 << 12, 1 << 14, 1 << 16, 1 << 18, 1 << 19, 1 << 20, 1 << 22),
                registry=registry,
            ),
            fetch_limit=Gauge(
                "arks_accountant_fetch_limit",
                "Messages a lane fetches at once now: consumer.batch, less while a hot "
                "quota's ledger entry is over its budget.",
                registry=registry,
            ),
        )
