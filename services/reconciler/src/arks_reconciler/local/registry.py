"""The record of every replica process, in the KV bucket `arks-replicas`.

A record is written as soon as a process starts (and again when it restarts), and
deleted once the process is gone; it holds what is needed to recognise the process
after a reconciler restart (pid, start time, boot id), to reconnect to it (port, URL)
and to account for it (owner, role, template hash, restarts). Key:
`<namespace>.<replica name>`.

Records are the reconciler's own bookkeeping (nothing else reads them), so the model
lives here rather than in arks_common.events. A record that does not parse is skipped
and deleted (it cannot name a process we could safely adopt).
"""

from __future__ import annotations

import logging
from datetime import datetime

import nats.errors
import nats.js.errors
from pydantic import BaseModel, ConfigDict, ValidationError

from arks_common import subjects
from arks_common.errors import RetryableError
from arks_common.messaging import Bus
from arks_common.store import ObjectRef
from arks_reconciler.local.processes import ProcessIdentity
from arks_reconciler.publishing import read_bucket

log = logging.getLogger(__name__)

_NATS_ERRORS = (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError)


class ReplicaRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    version: int = 1
    name: str
    namespace: str
    kind: str
    owner: str
    owner_uid: str = ""
    role: str
    runtime: str
    template_hash: str
    pid: int
    start_ticks: int
    boot_id: str
    port: int
    url: str
    argv: list[str]
    log_path: str
    started_at: datetime
    restarts: int = 0
    gpus: list[str] = []
    """GPU ids it was given (CUDA_VISIBLE_DEVICES), held again when adopted."""
    shared_gpus: bool = False

    @property
    def key(self) -> str:
        return subjects.namespaced_key(self.namespace, self.name)

    @property
    def owner_ref(self) -> ObjectRef:
        return ObjectRef(self.kind, self.namespace, self.owner)

    @property
    def identity(self) -> ProcessIdentity:
        return ProcessIdentity(self.pid, self.start_ticks, self.boot_id)


class ReplicaRegistry:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def load(self) -> list[ReplicaRecord]:
        records: list[ReplicaRecord] = []
        for key, value in (await read_bucket(self.bus, subjects.REPLICAS_BUCKET)).items():
            try:
                records.append(ReplicaRecord.model_validate_json(value))
            except ValidationError:
                log.warning("dropping unreadable replica record %s", key)
                await self._delete_key(key)
        return records

    async def put(self, record: ReplicaRecord) -> None:
        try:
            kv = await self.bus.kv(subjects.REPLICAS_BUCKET)
            await kv.put(record.key, record.model_dump_json().encode())
        except _NATS_ERRORS as exc:
            raise RetryableError(f"recording replica {record.name} failed: {exc}") from exc

    async def delete(self, record: ReplicaRecord) -> None:
        await self._delete_key(record.key)

    async def _delete_key(self, key: str) -> None:
        try:
            kv = await self.bus.kv(subjects.REPLICAS_BUCKET)
            await kv.delete(key)
        except _NATS_ERRORS as exc:
            raise RetryableError(f"deleting replica record {key} failed: {exc}") from exc
