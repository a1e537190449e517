"""Integrity of downloaded files against what the Hub says they are.

huggingface_hub names every blob after the file's ETag and checks only its size. The
Hub's ETag is the LFS sha256 for LFS files and the git blob sha1 for the others, so a
blob whose content hashes to its own name is the file the Hub listed. A file whose ETag
is neither (a mirror that sends opaque ETags) is checked by size only, and recorded so.

A mismatch deletes the blob and its snapshot link, so the retry downloads it again, and
raises a retryable `DownloadFailure` naming the file and both digests.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from arks_common.events import ModelCacheErrorKind
from arks_model_cache.entries import Verification
from arks_model_cache.failures import DownloadCancelled, DownloadFailure

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
READ_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class SnapshotFile:
    """One requested file of a snapshot as it is on disk."""

    path: str
    """Path inside the repository."""
    pointer: Path
    """The snapshot entry (a symlink into blobs/)."""
    blob: Path
    etag: str
    size: int
    expected_size: int | None = None
    """The size the tree listing gives, when known."""


def expected_check(etag: str) -> Verification:
    if SHA256_RE.fullmatch(etag):
        return "sha256"
    if SHA1_RE.fullmatch(etag):
        return "git-sha1"
    return "size"


def digest_file(path: Path, kind: Verification, size: int, cancel: threading.Event | None) -> str:
    if kind == "sha256":
        digest = hashlib.sha256()
    else:
        digest = hashlib.sha1(b"blob %d\x00" % size, usedforsecurity=False)
    buffer = bytearray(READ_CHUNK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as fh:
        while True:
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled("verification cancelled")
            n = fh.readinto(buffer)
            if not n:
                break
            digest.update(view[:n])
    return digest.hexdigest()


def _discard(file: SnapshotFile) -> None:
    file.pointer.unlink(missing_ok=True)
    file.blob.unlink(missing_ok=True)


def verify(file: SnapshotFile, cancel: threading.Event | None = None) -> Verification:
    """Check one file; on mismatch remove it and raise a retryable failure."""
    if file.expected_size is not None and file.size != file.expected_size:
        _discard(file)
        raise DownloadFailure(
            ModelCacheErrorKind.OTHER,
            f"integrity check failed for {file.path}: {file.size} bytes on disk, "
            f"the Hub lists {file.expected_size}",
            retryable=True,
        )
    kind = expected_check(file.etag)
    if kind == "size":
        return kind
    actual = digest_file(file.blob, kind, file.size, cancel)
    if actual != file.etag:
        _discard(file)
        raise DownloadFailure(
            ModelCacheErrorKind.OTHER,
            f"integrity check failed for {file.path}: {kind} is {actual}, "
            f"the Hub's ETag is {file.etag}",
            retryable=True,
        )
    return kind
