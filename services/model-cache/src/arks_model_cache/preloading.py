"""Warming the page cache: read a model's files once so the engine's first load comes
from memory instead of disk.

Files are read sequentially with a reused buffer (and `POSIX_FADV_SEQUENTIAL` where the
platform has it); the time taken is what `preload_seconds` reports. A file that
vanishes meanwhile (evicted by another process) is a retryable failure.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from arks_common.events import ModelCacheErrorKind
from arks_model_cache.failures import DownloadCancelled, DownloadFailure

READ_CHUNK = 16 * 1024 * 1024


@dataclass(frozen=True)
class PreloadReport:
    files: int
    bytes_read: int
    seconds: float


def preload(paths: Sequence[Path], cancel: threading.Event | None = None) -> PreloadReport:
    started = time.perf_counter()
    buffer = bytearray(READ_CHUNK)
    total = 0
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError as exc:
            raise DownloadFailure(
                ModelCacheErrorKind.OTHER,
                f"{path} disappeared before it could be preloaded",
                retryable=True,
            ) from exc
        try:
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            with os.fdopen(fd, "rb", buffering=0, closefd=False) as fh:
                while True:
                    if cancel is not None and cancel.is_set():
                        raise DownloadCancelled("preload cancelled")
                    n = fh.readinto(buffer)
                    if not n:
                        break
                    total += n
        finally:
            os.close(fd)
    return PreloadReport(len(paths), total, time.perf_counter() - started)
