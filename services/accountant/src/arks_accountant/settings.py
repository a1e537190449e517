"""Typed settings of the accountant, read once at start-up.

Environment variables use the `ARKS_` prefix and `__` between groups, e.g.
`ARKS_NATS__URL`, `ARKS_REDIS__URL`, `ARKS_CONSUMER__BATCH`, `ARKS_CONSUMER__LANES`,
`ARKS_CONSUMER__MAX_ACK_PENDING`, `ARKS_STATUS__WRITER=none`, `ARKS_STATUS__INTERVAL`,
`ARKS_SWEEP__INTERVAL`, `ARKS_LEDGER__WATCHDOG_INTERVAL`, `ARKS_HEALTH__PORT`
(docs/accountant.md lists them all). Invalid values fail validation at start-up.
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, Field

from arks_common.settings import KubernetesSettings, RedisSettings, ServiceSettings


class ConsumerSettings(BaseModel):
    """The durable pull consumer on ARKS_USAGE that every accountant process shares."""

    batch: int = Field(
        1000,
        ge=1,
        le=10_000,
        description="Messages fetched and settled at once (fewer when fewer are waiting); "
        "per-batch costs (counter increments, ledger writes) are shared by the batch.",
    )
    max_ack_pending: int = Field(
        10_000, ge=1, description="Unacknowledged messages the server hands out, all processes."
    )
    ack_wait: float = Field(
        30.0, gt=0, description="Seconds before an unacknowledged message is redelivered."
    )
    max_deliver: int = Field(
        10, ge=2, description="Deliveries before a message that keeps failing is dead-lettered."
    )
    fetch_timeout: float = Field(1.0, gt=0, description="Seconds one fetch waits for messages.")
    lanes: int = Field(
        3,
        ge=1,
        le=32,
        description="Concurrent fetch-settle-ack loops in this process: while one waits for "
        "Valkey or NATS another computes.",
    )
    unknown_quota_retries: int = Field(
        3,
        ge=1,
        description="Deliveries an event naming a quota with no spec in KV waits for the "
        "spec (the KV watch may lag the router); afterwards it is applied unpriced.",
    )


class StatusSettings(BaseModel):
    """Write-back of usage into ArksQuota.status."""

    writer: Literal["local", "kubernetes", "none"] = Field(
        "local",
        description="local: the NATS KV resource store of the local platform; kubernetes: "
        "the ArksQuota status subresource (see `kubernetes`); none: do not write status "
        "(usage stays readable in Valkey and the ledger).",
    )
    interval: float = Field(2.0, gt=0, description="At most one status write per quota per this.")


class SweepSettings(BaseModel):
    interval: float = Field(
        5.0,
        gt=0,
        description="Seconds between sweeps that release quota reservations of routers whose "
        "lease lapsed, and expired ones.",
    )
    max_per_quota: int = Field(1000, ge=1, description="Reservations released per quota per sweep.")


class LedgerSettings(BaseModel):
    """The durable copy of the counters in NATS KV (see docs/accountant.md)."""

    watchdog_interval: float = Field(
        0.5,
        gt=0,
        description="Seconds between checks that Valkey still holds the accountant's epoch; "
        "a Valkey that lost its data is restored from the ledger within this delay.",
    )
    restore_lock_seconds: float = Field(
        60.0, gt=0, description="Lease of the restore lock one accountant holds while restoring."
    )
    inflight_lanes: int = Field(
        64,
        ge=2,
        description="In-flight marker sets (one per consumer lane of each process) kept in "
        "each ledger entry; the oldest are dropped beyond this.",
    )
    unconfirmed_batches: int = Field(
        8, ge=1, description="Batches whose acks are not yet known to have reached NATS."
    )
    ack_floor_interval: float = Field(
        1.0,
        gt=0,
        description="Seconds between reads of the consumer's ack floor; in-flight markers "
        "of messages below it are dropped from the ledger entries written.",
    )
    entry_budget: int = Field(
        0,
        ge=0,
        description="Bytes a ledger entry should stay under (0: half the NATS server's "
        "max_payload). When an entry written lately is larger, the lanes fetch smaller "
        "batches, so that one hot quota's in-flight markers keep fitting in one message.",
    )


class AccountantSettings(ServiceSettings):
    """Settings of `arks-accountant`."""

    redis: RedisSettings = RedisSettings()
    consumer: ConsumerSettings = ConsumerSettings()
    status: StatusSettings = StatusSettings()
    sweep: SweepSettings = SweepSettings()
    ledger: LedgerSettings = LedgerSettings()
    kubernetes: KubernetesSettings = KubernetesSettings()
    instance_id: str = Field(
        default_factory=lambda: uuid.uuid4().hex[:12],
        description="This process's name in ledger entries; unique per process by default.",
    )
    publish_timeout: float = Field(
        10.0, gt=0, description="Seconds to wait for JetStream to store a batch's billing records."
    )
