"""What a caller asks the cache for, and how it may reach the Hub.

`ModelSpec` names a repository snapshot as requested (a revision may be a branch, a
tag or a commit); `HubAccess` carries the endpoint, token and offline flag of one
request. Both are immutable values: they key the in-process single flight.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

from arks_common.events import ModelCacheJob

DEFAULT_REVISION = "main"
DEFAULT_ENDPOINT = "https://huggingface.co"
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
RepoType = Literal["model", "dataset"]


@dataclass(frozen=True)
class ModelSpec:
    repo_id: str
    repo_type: RepoType = "model"
    revision: str = DEFAULT_REVISION
    allow_patterns: tuple[str, ...] | None = None
    ignore_patterns: tuple[str, ...] | None = None

    @classmethod
    def from_job(cls, job: ModelCacheJob) -> ModelSpec:
        return cls(
            repo_id=job.repo_id,
            repo_type=job.repo_type,
            revision=job.revision or DEFAULT_REVISION,
            allow_patterns=tuple(job.allow_patterns) if job.allow_patterns is not None else None,
            ignore_patterns=tuple(job.ignore_patterns) if job.ignore_patterns is not None else None,
        )

    @property
    def revision_is_commit(self) -> bool:
        return COMMIT_RE.fullmatch(self.revision) is not None

    def describe(self) -> str:
        kind = "" if self.repo_type == "model" else f"{self.repo_type}:"
        return f"{kind}{self.repo_id}@{self.revision}"


@dataclass(frozen=True)
class HubAccess:
    endpoint: str
    token: str | None = None
    """None: huggingface_hub's own lookup (HF_TOKEN, then the stored login)."""
    offline: bool = False
    check_access: bool = True
    etag_timeout: float = 10.0
    file_workers: int = 8

    @property
    def token_fingerprint(self) -> str:
        """Distinguishes callers by credential without keeping the token in keys or logs."""
        if self.token is None:
            return "implicit"
        return hashlib.sha256(self.token.encode()).hexdigest()[:16]
