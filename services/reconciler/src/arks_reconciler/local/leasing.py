"""Leases on model-cache snapshots: "this application uses that snapshot, do not evict it".

The model cache evicts least-recently-used snapshots unless a live lease covers them
(docs/model-cache.md §4). Before an application's replicas start on a downloaded model,
the reconciler holds `app.<ns>.<application>` on (repo, commit); it releases it when the
application goes, and releases `pin.<ns>.<model>` / `job.<ns>.<model>` when the model
goes. A lease is a JSON file `<cache root>/arks/leases/<holder>.json`, written
atomically (temporary file, then rename), in the format the model cache documents;
services share no code, so the format is written here.

Failures: a lease that cannot be written is logged and the replicas start anyway (an
eviction would make a restart re-download; refusing to serve would be worse).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

HOLDER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


def app_holder(namespace: str, name: str) -> str:
    return f"app.{namespace}.{name}"


def model_holders(namespace: str, name: str) -> tuple[str, str]:
    return (f"pin.{namespace}.{name}", f"job.{namespace}.{name}")


def _write(path: Path, body: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(body)
    os.replace(tmp, path)


class Leases:
    def __init__(self, cache_root: Path) -> None:
        self.dir = cache_root.absolute() / "arks" / "leases"
        self._held: dict[str, tuple[str, str]] = {}

    def path(self, holder: str) -> Path:
        if not HOLDER_RE.fullmatch(holder):
            raise ValueError(f"invalid lease holder {holder!r}")
        return self.dir / f"{holder}.json"

    async def hold(self, holder: str, repo_id: str, commit: str) -> None:
        if self._held.get(holder) == (repo_id, commit):
            return
        body = json.dumps(
            {
                "version": 1,
                "holder": holder,
                "repo_type": "model",
                "repo_id": repo_id,
                "commit": commit,
                "pinned": False,
                "acquired_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "expires_at": None,
                "host": None,
                "pid": None,
            },
            indent=1,
        ).encode()
        try:
            await asyncio.to_thread(_write, self.path(holder), body)
        except (OSError, ValueError) as exc:
            log.warning("could not write the model-cache lease %s: %s", holder, exc)
            return
        self._held[holder] = (repo_id, commit)

    async def release(self, *holders: str) -> None:
        for holder in holders:
            self._held.pop(holder, None)
            try:
                await asyncio.to_thread(self.path(holder).unlink, missing_ok=True)
            except (OSError, ValueError) as exc:
                log.warning("could not release the model-cache lease %s: %s", holder, exc)
