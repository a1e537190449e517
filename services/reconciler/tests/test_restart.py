"""A reconciler crash or restart: replicas keep serving and are adopted, never duplicated."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from arks_common import events, messaging, subjects
from arks_common.store import ResourceStore
from arks_reconciler.local import processes
from arks_reconciler.local.registry import ReplicaRecord, ReplicaRegistry
from arks_reconciler.testing import (
    ReconcilerProcess,
    app_obj,
    endpoint_obj,
    eventually,
    model_obj,
    replica_records,
)


async def backends(bus: messaging.Bus) -> list[str]:
    kv = await bus.kv(subjects.ROUTES_BUCKET)
    try:
        entry = await kv.get("default.qwen-7b")
    except Exception:
        return []
    return sorted(b.url for b in events.RouteTable.from_bytes(entry.value or b"{}").backends)


async def count_backends(bus: messaging.Bus, n: int) -> list[str] | None:
    urls = await backends(bus)
    return urls if len(urls) == n else None


def ghost_process(data_dir: Path) -> subprocess.Popen[bytes]:
    """A marked replica process nobody recorded: what a crash right after a spawn leaves."""
    env = {
        **os.environ,
        processes.REPLICA_SCOPE_ENV: processes.scope_of(data_dir),
        processes.REPLICA_NAME_ENV: "app-qwen-ghost",
    }
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"],
        env=env,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )


async def test_kill_9_and_restart_adopts_without_duplicates(
    nats_server: Any, bus: messaging.Bus, store: ResourceStore, data_dir: Path, tmp_path: Path
) -> None:
    reconciler = ReconcilerProcess(nats_server.url, data_dir, tmp_path / "reconciler.log")
    reconciler.start()
    try:
        for obj in (model_obj(), app_obj(replicas=2, servedModelName="qwen-7b"), endpoint_obj()):
            await store.apply(obj)
        before = await eventually(lambda: count_backends(bus, 2), within=30, what="2 backends")
        records = await replica_records(bus)
        pids = sorted(r.pid for r in records)
        assert len(pids) == 2

        reconciler.kill()  # SIGKILL: no cleanup at all
        # The replicas outlive the reconciler and keep serving.
        assert all(processes.identify(pid) is not None for pid in pids)

        # What a crash can leave besides: an unrecorded process and a stale record.
        ghost = ghost_process(data_dir)
        finished = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
        await finished.wait()
        stale = ReplicaRecord(
            **{
                **records[0].model_dump(),
                "name": "app-qwen-stale",
                "pid": finished.pid,
                "start_ticks": 1,
                "port": 1,
                "url": "http://127.0.0.1:1",
                "started_at": datetime.now(UTC),
            }
        )
        await ReplicaRegistry(bus).put(stale)

        reconciler.start()
        # A spec change after the restart proves the new reconciler works on adopted state.
        await store.apply(app_obj(replicas=3, servedModelName="qwen-7b"))
        after = await eventually(lambda: count_backends(bus, 3), within=30, what="3 backends")
        assert set(before) <= set(after)
        records = await replica_records(bus)
        assert len(records) == 3
        assert set(pids) <= {r.pid for r in records}
        marked = processes.find_marked(processes.scope_of(data_dir))
        assert sorted(marked) == sorted(r.pid for r in records)  # no duplicates, no ghost
        await eventually(lambda: _exited(ghost), what="the unrecorded process stopped")
        assert "app-qwen-stale" not in {r.name for r in records}

        status = (await store.get("ArksApplication", "default", "app-qwen") or {}).get("status")
        assert status is not None
        assert status["readyReplicas"] == 3
        restarts = {r.name: r.restarts for r in records}
        assert set(restarts.values()) == {0}

        # A graceful stop leaves the replicas running for the next reconciler.
        await asyncio.to_thread(reconciler.terminate)
        assert all(processes.identify(pid) is not None for pid in marked)
    finally:
        reconciler.kill()


async def _exited(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is not None
