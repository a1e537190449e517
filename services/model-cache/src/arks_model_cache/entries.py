"""What Arks records about each cached snapshot: which files were verified, and when the
snapshot was last used (the LRU clock of eviction).

One JSON file per snapshot, `<root>/arks/entries/<repo-folder>--<commit>.json`. Records
are merged, not overwritten, because requests with different patterns fetch different
files of the same commit. Writers hold the cache lock; a missing or unreadable record
only costs a re-verification, never a wrong answer.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from arks_model_cache.storing import write_atomic

log = logging.getLogger(__name__)

Verification = Literal["sha256", "git-sha1", "size"]
"""How a file was checked: against the LFS sha256 (the Hub's ETag of LFS files), the
git blob sha1 (the ETag of other files), or, when the ETag is no content hash, its size."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class FileRecord(BaseModel):
    size: int = Field(ge=0)
    etag: str
    verified: Verification


class EntryRecord(BaseModel):
    version: Literal[1] = 1
    repo_type: str
    repo_id: str
    commit: str
    revisions: list[str] = Field(default_factory=list)
    files: dict[str, FileRecord] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime = Field(default_factory=utcnow)

    @property
    def size_bytes(self) -> int:
        return sum(f.size for f in self.files.values())


def load_entry(path: Path) -> EntryRecord | None:
    try:
        return EntryRecord.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError, ValueError) as exc:
        log.warning("ignoring unreadable cache entry %s: %s", path, exc)
        return None


def save_entry(path: Path, record: EntryRecord) -> None:
    write_atomic(path, record.model_dump_json(indent=1).encode())
