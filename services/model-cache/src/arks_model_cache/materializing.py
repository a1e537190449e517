"""Placing a cached snapshot at a fixed directory (`download --local-dir`), e.g. the
`/models/models/<namespace>/<name>` path upstream Arks mounts into engine pods.

Files become hard links to the cache's blobs, so the directory costs no extra space and
engines see ordinary files; where a hard link is impossible (another file system, or a
file system without links) the file is copied. Each file is placed via a temporary
name and renamed, so a reader never sees a partial file; files already linked to the
right blob are left alone, which makes re-running cheap. Files in the directory that
the snapshot does not have are left untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

from arks_model_cache.verifying import SnapshotFile

_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}


def materialize(files: Sequence[SnapshotFile], local_dir: Path) -> int:
    """Place every file under `local_dir`; returns how many were copied (not linked)."""
    copied = 0
    local_dir.mkdir(parents=True, exist_ok=True)
    for file in files:
        target = local_dir / file.path
        target.parent.mkdir(parents=True, exist_ok=True)
        source = file.blob
        with contextlib.suppress(FileNotFoundError):
            if os.path.samefile(target, source):
                continue
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            try:
                os.link(source, tmp)
            except OSError as exc:
                if exc.errno not in _NO_LINK:
                    raise
                shutil.copyfile(source, tmp)
                copied += 1
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return copied
