"""What is in the cache, and making room: least recently used snapshots nobody holds go first.

`inventory()` walks the huggingface_hub cache: every repo's blobs (with sizes, partial
downloads included) and every snapshot with the blobs it links to and its last use
(from its entry record, else the snapshot directory's mtime). Blobs are shared between
snapshots of a repo, so evicting a snapshot frees only the blobs no remaining snapshot
links to.

`evict()` holds the cache lock and removes snapshots, oldest use first, until the cache
fits `target_bytes` and the file system has `free_bytes` available. It never removes a
snapshot that a live lease covers (in use or pinned), that the calling process reports
busy, or whose download lock another process holds (it is being downloaded or
verified right now; eviction takes that lock itself while deleting). When everything
left is protected it stops and reports that the cache is still over its target.

`collect_garbage()` removes partial downloads and unreferenced blobs older than a
maximum age (leftovers of crashed downloads) and dead lease files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from arks_model_cache.entries import load_entry
from arks_model_cache.layout import CacheLayout, parse_repo_folder
from arks_model_cache.leases import LeaseRecord, LeaseRegistry
from arks_model_cache.locking import exclusive, try_exclusive

log = logging.getLogger(__name__)

Busy = Callable[[str, str], bool]
"""(repo type, repo id) -> whether this process is working on that repo right now."""


@dataclass(frozen=True)
class SnapshotInfo:
    repo_type: str
    repo_id: str
    commit: str
    path: Path
    blobs: frozenset[str]
    last_used: datetime
    files: int


@dataclass
class RepoInfo:
    repo_type: str
    repo_id: str
    storage: Path
    blob_sizes: dict[str, int] = field(default_factory=dict)
    """Blob name -> size, partial downloads (`*.incomplete`) included."""
    snapshots: list[SnapshotInfo] = field(default_factory=list)

    @property
    def size_bytes(self) -> int:
        return sum(self.blob_sizes.values())

    def exclusive_bytes(self, snapshot: SnapshotInfo, others: list[SnapshotInfo]) -> int:
        """Bytes freed by removing `snapshot` while `others` stay."""
        shared: set[str] = set()
        for other in others:
            shared |= other.blobs
        return sum(self.blob_sizes.get(b, 0) for b in snapshot.blobs - shared)


@dataclass
class Inventory:
    repos: list[RepoInfo]

    @property
    def total_bytes(self) -> int:
        return sum(r.size_bytes for r in self.repos)

    def snapshots(self) -> list[SnapshotInfo]:
        return [s for r in self.repos for s in r.snapshots]


@dataclass(frozen=True)
class Evicted:
    repo_type: str
    repo_id: str
    commit: str
    freed_bytes: int


@dataclass
class EvictionReport:
    before_bytes: int
    after_bytes: int
    target_bytes: int | None
    evicted: list[Evicted] = field(default_factory=list)
    satisfied: bool = True
    """False when protected snapshots keep the cache above its target."""


def _last_used(
    layout: CacheLayout, repo_type: str, repo_id: str, commit: str, path: Path
) -> datetime:
    entry = load_entry(layout.entry_file(repo_type, repo_id, commit))
    if entry is not None:
        return entry.last_used_at
    with contextlib.suppress(OSError):
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return datetime.fromtimestamp(0, UTC)


def _snapshot(layout: CacheLayout, repo: RepoInfo, path: Path) -> SnapshotInfo:
    blobs: set[str] = set()
    files = 0
    for entry in path.rglob("*"):
        if entry.is_symlink():
            files += 1
            blobs.add(Path(os.readlink(entry)).name)
        elif entry.is_file():
            files += 1
    return SnapshotInfo(
        repo_type=repo.repo_type,
        repo_id=repo.repo_id,
        commit=path.name,
        path=path,
        blobs=frozenset(blobs),
        last_used=_last_used(layout, repo.repo_type, repo.repo_id, path.name, path),
        files=files,
    )


def inventory(layout: CacheLayout) -> Inventory:
    repos: list[RepoInfo] = []
    if not layout.hub_dir.is_dir():
        return Inventory(repos)
    for storage in sorted(layout.hub_dir.iterdir()):
        parsed = parse_repo_folder(storage.name)
        if parsed is None or not storage.is_dir():
            continue
        repo = RepoInfo(parsed[0], parsed[1], storage)
        blobs_dir = storage / "blobs"
        if blobs_dir.is_dir():
            for blob in blobs_dir.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    repo.blob_sizes[blob.name] = blob.stat().st_size
        snapshots_dir = storage / "snapshots"
        if snapshots_dir.is_dir():
            for path in sorted(snapshots_dir.iterdir()):
                if path.is_dir():
                    repo.snapshots.append(_snapshot(layout, repo, path))
        repos.append(repo)
    return Inventory(repos)


def _protected(snapshot: SnapshotInfo, leases: list[LeaseRecord], busy: Busy | None) -> bool:
    if busy is not None and busy(snapshot.repo_type, snapshot.repo_id):
        return True
    return any(
        lease.covers(snapshot.repo_type, snapshot.repo_id, snapshot.commit) for lease in leases
    )


def _remove_snapshot(layout: CacheLayout, repo: RepoInfo, snapshot: SnapshotInfo) -> int:
    """Delete a snapshot and the blobs only it used; returns the bytes freed."""
    remaining = [s for s in repo.snapshots if s.commit != snapshot.commit]
    referenced: set[str] = set()
    for other in remaining:
        referenced |= other.blobs
    shutil.rmtree(snapshot.path, ignore_errors=True)
    freed = 0
    for blob in snapshot.blobs - referenced:
        size = repo.blob_sizes.pop(blob, 0)
        with contextlib.suppress(FileNotFoundError):
            (repo.storage / "blobs" / blob).unlink()
            freed += size
    refs = repo.storage / "refs"
    if refs.is_dir():
        for ref in refs.rglob("*"):
            with contextlib.suppress(OSError):
                if ref.is_file() and ref.read_text().strip() == snapshot.commit:
                    ref.unlink()
    (repo.storage / "trees" / f"{snapshot.commit}.json").unlink(missing_ok=True)
    shutil.rmtree(repo.storage / ".no_exist" / snapshot.commit, ignore_errors=True)
    layout.entry_file(repo.repo_type, repo.repo_id, snapshot.commit).unlink(missing_ok=True)
    repo.snapshots = remaining
    return freed


def evict(
    layout: CacheLayout,
    leases: LeaseRegistry,
    *,
    target_bytes: int | None,
    free_bytes: int | None = None,
    busy: Busy | None = None,
) -> EvictionReport:
    """Remove unprotected snapshots, least recently used first, until the cache is at
    most `target_bytes` and the file system has `free_bytes` available."""
    layout.ensure()
    with exclusive(layout.cache_lock):
        inv = inventory(layout)
        total = inv.total_bytes
        report = EvictionReport(before_bytes=total, after_bytes=total, target_bytes=target_bytes)

        def satisfied() -> bool:
            if target_bytes is not None and total > target_bytes:
                return False
            return free_bytes is None or shutil.disk_usage(layout.root).free >= free_bytes

        if satisfied():
            return report
        live = leases.live()
        by_repo = {(r.repo_type, r.repo_id): r for r in inv.repos}
        candidates = sorted(
            (s for s in inv.snapshots() if not _protected(s, live, busy)),
            key=lambda s: s.last_used,
        )
        for snapshot in candidates:
            if satisfied():
                break
            lock = layout.download_lock(snapshot.repo_type, snapshot.repo_id, snapshot.commit)
            with try_exclusive(lock) as held:
                if not held:
                    continue
                freed = _remove_snapshot(
                    layout, by_repo[(snapshot.repo_type, snapshot.repo_id)], snapshot
                )
            total -= freed
            report.evicted.append(
                Evicted(snapshot.repo_type, snapshot.repo_id, snapshot.commit, freed)
            )
            log.info(
                "evicted %s@%s (%d bytes freed, last used %s)",
                snapshot.repo_id,
                snapshot.commit,
                freed,
                snapshot.last_used.isoformat(),
            )
        report.after_bytes = total
        report.satisfied = satisfied()
        if not report.satisfied:
            log.warning(
                "cache %s holds %d bytes, above its target %s: the rest is in use or pinned",
                layout.root,
                total,
                target_bytes,
            )
        return report


def collect_garbage(layout: CacheLayout, leases: LeaseRegistry, *, max_age_seconds: float) -> int:
    """Remove stale partial downloads, unreferenced blobs and dead leases; returns bytes freed."""
    layout.ensure()
    cutoff = time.time() - max_age_seconds
    freed = 0
    with exclusive(layout.cache_lock):
        for repo in inventory(layout).repos:
            referenced: set[str] = set()
            for snapshot in repo.snapshots:
                referenced |= snapshot.blobs
            for name, size in list(repo.blob_sizes.items()):
                if name in referenced:
                    continue
                path = repo.storage / "blobs" / name
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        freed += size
        leases.prune()
    return freed
