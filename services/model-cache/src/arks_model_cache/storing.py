"""Small durable-file helpers: atomic replace, so readers never see half a record.

A record is written to a unique temporary file in the same directory and renamed over
the target (`os.replace` is atomic on POSIX), so a crash leaves either the old or the
new record, never a torn one. Stray temporary files are harmless and ignored by readers.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
