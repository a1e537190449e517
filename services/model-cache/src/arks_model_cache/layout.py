"""Where everything lives under a cache root.

    <root>/hub/                          huggingface_hub's cache (HF_HUB_CACHE layout):
        models--<org>--<name>/blobs/<etag>           file contents, named by the Hub's ETag
        models--<org>--<name>/snapshots/<commit>/... symlinks into blobs/
        models--<org>--<name>/refs/<revision>        the commit a branch or tag resolved to
        models--<org>--<name>/trees/<commit>.json    the cached file listing
    <root>/arks/entries/<repo-folder>--<commit>.json  what Arks knows of a snapshot
                                                      (verified files, last use)
    <root>/arks/leases/<holder>.json                  who holds which snapshot (docs/model-cache.md)
    <root>/arks/locks/                                cross-process locks

A snapshot is identified by (repo type, repo id, commit): the same revision of the same
repo is one directory for every namespace that asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from arks_model_cache.specs import RepoType

REPO_TYPES: dict[str, RepoType] = {"models": "model", "datasets": "dataset"}


def repo_folder(repo_type: str, repo_id: str) -> str:
    """huggingface_hub's folder name for a repo, e.g. `models--org--name`."""
    return "--".join([f"{repo_type}s", *repo_id.split("/")])


def parse_repo_folder(name: str) -> tuple[RepoType, str] | None:
    kind, sep, rest = name.partition("--")
    if not sep or kind not in REPO_TYPES or not rest:
        return None
    return REPO_TYPES[kind], rest.replace("--", "/")


@dataclass(frozen=True)
class CacheLayout:
    root: Path

    @classmethod
    def at(cls, root: Path) -> CacheLayout:
        return cls(root.expanduser().resolve())

    @property
    def hub_dir(self) -> Path:
        return self.root / "hub"

    @property
    def meta_dir(self) -> Path:
        return self.root / "arks"

    @property
    def entries_dir(self) -> Path:
        return self.meta_dir / "entries"

    @property
    def leases_dir(self) -> Path:
        return self.meta_dir / "leases"

    @property
    def locks_dir(self) -> Path:
        return self.meta_dir / "locks"

    @property
    def cache_lock(self) -> Path:
        """Held while the cache is inspected or changed as a whole (eviction, entries)."""
        return self.locks_dir / "cache.lock"

    def ensure(self) -> None:
        for directory in (self.hub_dir, self.entries_dir, self.leases_dir, self.locks_dir):
            directory.mkdir(parents=True, exist_ok=True)

    def storage_dir(self, repo_type: str, repo_id: str) -> Path:
        return self.hub_dir / repo_folder(repo_type, repo_id)

    def snapshot_dir(self, repo_type: str, repo_id: str, commit: str) -> Path:
        return self.storage_dir(repo_type, repo_id) / "snapshots" / commit

    def ref_file(self, repo_type: str, repo_id: str, revision: str) -> Path:
        return self.storage_dir(repo_type, repo_id) / "refs" / revision

    def entry_file(self, repo_type: str, repo_id: str, commit: str) -> Path:
        return self.entries_dir / f"{repo_folder(repo_type, repo_id)}--{commit}.json"

    def download_lock(self, repo_type: str, repo_id: str, commit: str) -> Path:
        """One download of a snapshot at a time across processes sharing this root."""
        return self.locks_dir / f"{repo_folder(repo_type, repo_id)}--{commit}.lock"
