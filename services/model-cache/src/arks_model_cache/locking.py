"""Cross-process exclusive locks on files under the cache root (`flock(2)`).

`flock` locks belong to an open file description, so two threads of one process that
open the lock file separately exclude each other too. The kernel drops a lock when its
holder dies, so a crashed download never leaves a stale lock behind. Waiting polls a
non-blocking attempt so a waiter in a worker thread can give up when its request is
cancelled (`DownloadCancelled`) instead of blocking its thread forever.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from arks_model_cache.failures import DownloadCancelled

POLL_SECONDS = 0.05


@contextlib.contextmanager
def exclusive(path: Path, *, cancel: threading.Event | None = None) -> Iterator[bool]:
    """Hold an exclusive lock on `path` for the block; yields whether the lock was
    contended (another process or thread held it when we arrived)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    contended = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                contended = True
                if cancel is None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    break
                if cancel.wait(POLL_SECONDS):
                    raise DownloadCancelled(f"gave up waiting for {path.name}") from None
        try:
            yield contended
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def try_exclusive(path: Path) -> Iterator[bool]:
    """Take the lock on `path` only if it is free; yields whether we hold it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
