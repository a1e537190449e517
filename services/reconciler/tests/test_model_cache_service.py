"""ArksModel with a Hugging Face source against the real model-cache service and a fake Hub.

`arks-model-cache` runs as a process (as `arks up` runs it), downloading from the model
cache's own fake Hub (`arks_model_cache.testing.fakehub`) into a cache directory; the
reconciler submits the job, follows progress, points the application's engines at the
snapshot and holds the application's lease on it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from arks_common import messaging
from arks_common.store import ResourceStore
from arks_model_cache.testing.fakehub import FakeHub
from arks_reconciler.testing import (
    InProcessReconciler,
    app_obj,
    eventually,
    make_settings,
    model_obj,
    replica_records,
)

CONFIG = json.dumps({"architectures": ["Qwen2ForCausalLM"], "max_position_embeddings": 4096})


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as running:
        running.add_repo("org/tiny-chat").commit(
            {"config.json": CONFIG, "model.safetensors": b"\0" * 4096, "README.md": "# tiny"}
        )
        yield running


@pytest.fixture
async def model_cache(nats_server: Any, hub: FakeHub, tmp_path: Path) -> AsyncIterator[Path]:
    root = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ARKS_"))}
    env.update(
        {
            "ARKS_NATS__URL": nats_server.url,
            "ARKS_HUB__ENDPOINT": hub.url,
            "ARKS_CACHE__ROOT": str(root),
            "ARKS_DOWNLOADS__PROGRESS_INTERVAL": "0.2",
            "ARKS_DOWNLOADS__BACKOFF_INITIAL": "0.05",
            "ARKS_TELEMETRY__LOG_JSON": "false",
            "HF_HOME": str(tmp_path / "hf-home"),
        }
    )
    log = (tmp_path / "model-cache.log").open("ab")
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "arks-model-cache"),
        "serve",
        env=env,
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        yield root
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


async def phase(store: ResourceStore, kind: str, name: str, wanted: str) -> dict[str, Any] | None:
    status = ((await store.get(kind, "default", name)) or {}).get("status") or {}
    return status if status.get("phase") == wanted else None


async def test_model_from_the_hub_through_the_model_cache(
    model_cache: Path, nats_server: Any, bus: messaging.Bus, store: ResourceStore, data_dir: Path
) -> None:
    settings = make_settings(
        nats_server.url, data_dir, stop_on_exit=True, model_cache_root=model_cache
    )
    reconciler = InProcessReconciler(settings)
    await reconciler.start()
    try:
        await store.apply(model_obj("tiny", model="org/tiny-chat", source={"huggingface": {}}))
        await store.apply(app_obj(model={"name": "tiny"}, servedModelName="tiny-chat"))
        ready = await eventually(
            lambda: phase(store, "ArksModel", "tiny", "Ready"), within=45, what="model Ready"
        )
        snapshot = Path(ready["path"])
        assert snapshot.is_relative_to(model_cache)
        assert json.loads((snapshot / "config.json").read_text())["max_position_embeddings"] == 4096
        assert len(ready["resolvedRevision"]) == 40
        assert ready["sizeBytes"] > 4096

        await eventually(
            lambda: phase(store, "ArksApplication", "app-qwen", "Running"), what="app Running"
        )
        (record,) = await replica_records(bus)
        assert record.argv[record.argv.index("--model") + 1] == str(snapshot)
        lease = model_cache / "arks" / "leases" / "app.default.app-qwen.json"
        held = json.loads(lease.read_text())
        assert (held["repo_id"], held["commit"]) == ("org/tiny-chat", ready["resolvedRevision"])

        # A repository the Hub does not have: Failed, saying so, and not retried.
        await store.apply(model_obj("nope", model="org/missing", source={"huggingface": {}}))
        failed = await eventually(
            lambda: phase(store, "ArksModel", "nope", "Failed"), within=45, what="model Failed"
        )
        loaded = next(c for c in failed["conditions"] if c["type"] == "ModelLoaded")
        assert "not_found" in loaded["message"]

        await store.delete("ArksApplication", "default", "app-qwen")
        await eventually(lambda: _gone(lease), what="lease released")
    finally:
        await reconciler.stop()


async def _gone(path: Path) -> bool:
    return not await asyncio.to_thread(path.exists)
