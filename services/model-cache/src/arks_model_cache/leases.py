"""Leases: who is using (or has pinned) which cached snapshot, so eviction skips it.

A lease is one JSON file, `<root>/arks/leases/<holder>.json`, written atomically; the
holder name is the file name, so taking a lease again replaces the holder's previous
one (an application that moves to a new revision moves its lease) and releasing it is
deleting the file. Anyone who can write the cache root can hold a lease: the model
cache itself, the reconciler (directly or with `arks-model-cache lease`), an operator.

A lease protects one snapshot (`commit`) or every snapshot of a repo (`commit` null). It
is live until `expires_at` (null: until released) and, when it names a `pid` on this
`host`, only while that process runs, so a crashed holder never pins a model forever.
`pinned` marks an operator's or a model's pin (never evicted, reported as pinned); an
ordinary lease means "in use". The format is documented in docs/model-cache.md.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from arks_model_cache.storing import write_atomic

log = logging.getLogger(__name__)

HOLDER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


def this_host() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LeaseRecord(BaseModel):
    version: Literal[1] = 1
    holder: str
    repo_type: str = "model"
    repo_id: str
    commit: str | None = Field(None, description="None: every snapshot of the repo.")
    pinned: bool = False
    acquired_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    expires_at: datetime | None = None
    host: str | None = None
    pid: int | None = None

    @field_validator("holder")
    @classmethod
    def _valid_holder(cls, value: str) -> str:
        if not HOLDER_RE.fullmatch(value):
            raise ValueError(f"holder must match {HOLDER_RE.pattern} (got {value!r})")
        return value

    def is_live(self, now: datetime, host: str) -> bool:
        if self.expires_at is not None and self.expires_at <= now:
            return False
        return not (self.pid is not None and self.host == host and not pid_alive(self.pid))

    def covers(self, repo_type: str, repo_id: str, commit: str) -> bool:
        return (
            self.repo_type == repo_type
            and self.repo_id == repo_id
            and (self.commit is None or self.commit == commit)
        )


class LeaseRegistry:
    def __init__(self, leases_dir: Path) -> None:
        self.dir = leases_dir

    def _file(self, holder: str) -> Path:
        if not HOLDER_RE.fullmatch(holder):
            raise ValueError(f"invalid lease holder {holder!r}")
        return self.dir / f"{holder}.json"

    def acquire(
        self,
        holder: str,
        *,
        repo_type: str,
        repo_id: str,
        commit: str | None,
        ttl_seconds: float | None = None,
        pinned: bool = False,
        pid: int | None = None,
    ) -> LeaseRecord:
        now = datetime.now(UTC)
        record = LeaseRecord(
            holder=holder,
            repo_type=repo_type,
            repo_id=repo_id,
            commit=commit,
            pinned=pinned,
            acquired_at=now,
            expires_at=now + timedelta(seconds=ttl_seconds) if ttl_seconds is not None else None,
            host=this_host() if pid is not None else None,
            pid=pid,
        )
        write_atomic(self._file(holder), record.model_dump_json(indent=1).encode())
        return record

    def release(self, holder: str) -> bool:
        try:
            self._file(holder).unlink()
        except FileNotFoundError:
            return False
        return True

    def get(self, holder: str) -> LeaseRecord | None:
        return self._read(self._file(holder))

    def all(self) -> list[LeaseRecord]:
        if not self.dir.is_dir():
            return []
        records = (self._read(p) for p in sorted(self.dir.glob("*.json")))
        return [r for r in records if r is not None]

    def live(self, now: datetime | None = None) -> list[LeaseRecord]:
        now = now or datetime.now(UTC)
        host = this_host()
        return [r for r in self.all() if r.is_live(now, host)]

    def prune(self, now: datetime | None = None) -> int:
        """Delete the files of leases that are no longer live; returns how many."""
        now = now or datetime.now(UTC)
        host = this_host()
        removed = 0
        for record in self.all():
            if record.is_live(now, host):
                continue
            # Re-read right before deleting: the holder may have just renewed it.
            current = self.get(record.holder)
            if current is not None and current.acquired_at == record.acquired_at:
                removed += self.release(record.holder)
        return removed

    @staticmethod
    def _read(path: Path) -> LeaseRecord | None:
        try:
            return LeaseRecord.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError, ValueError) as exc:
            # An unreadable lease must not make a model evictable by accident, but it
            # cannot name what it protects either: say so loudly.
            log.warning("ignoring unreadable lease %s: %s", path, exc)
            return None
