"""Model cold start with the cache (recipe B6): time to ready of a first replica (a
download) vs a second replica (a cache hit) vs four replicas started together, and
how many times the Hub served the model.

Rig: a fake Hugging Face Hub in this process (stdlib HTTP server on 127.0.0.1) serving
a generated model of 4 shards of pseudo-random safetensors (4 GiB; 200 MiB with
--quick) plus config and tokenizer files. Every figure is measured twice, once per
mode of the model cache, with the real huggingface_hub client inside it:

- service: one `arks-model-cache` service process with nats-server; a replica's start
  is a ModelCacheJob on ARKS_MODEL_JOBS, ready when its ModelCacheResult arrives
  (the local platform's path). Replicas in namespaces of their own, so only the
  cache (keyed by repo and commit) makes them share.
- process: a replica's start is an `arks-model-cache download` process (the
  Kubernetes download Job / init container path), ready when it exits 0. That includes
  the interpreter's start-up and imports (about 2 s idle, far more on a loaded
  machine), which are not the cache's: the same run measures that floor (`download
  --help`, which imports everything and exits) and reports hit times net of it too.

Baseline: the first replica's cold start (a full download, verified) in the same run.
Targets (issue 5): a cache hit takes at most 10% of the cold time (service mode; the
process mode is judged net of its start-up floor, and its raw ratio is reported
beside); four replicas started together on an empty cache cause exactly one download
of each file, counted at the Hub, in both modes. Each cold scenario starts from an
empty cache root, deleted afterwards.

python -m bench model_cache            # 4 GiB model
python -m bench model_cache --quick    # 200 MiB model
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.common import BenchContext, free_port, process, venv_bin

MiB = 1024 * 1024
REPO = "bench/generated-model"
REPLICAS = 4
TARGET_HIT_RATIO = 0.10


def _hub(size: int) -> Any:
    from arks_model_cache.testing.fakehub import FakeHub, GeneratedContent

    hub = FakeHub().start()
    shard = size // 4
    files: dict[str, Any] = {
        f"model-{i + 1:05d}-of-00004.safetensors": GeneratedContent(shard, seed=i + 1)
        for i in range(4)
    }
    files["config.json"] = json.dumps({"architectures": ["BenchForCausalLM"], "hidden_size": 4096})
    files["tokenizer.json"] = json.dumps({"version": "1.0", "model": {"type": "BPE"}})
    files["generation_config.json"] = "{}"
    hub.add_repo(REPO).commit(files)
    return hub


def _env(hub_url: str) -> dict[str, str]:
    return {
        "ARKS_HUB__ENDPOINT": hub_url,
        "ARKS_TELEMETRY__LOG_JSON": "false",
        "ARKS_TELEMETRY__LOG_LEVEL": "WARNING",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


# ----------------------------------------------------------------------------- service mode


@contextlib.asynccontextmanager
async def _service(ctx: BenchContext, hub_url: str, root: Path) -> AsyncIterator[Any]:
    import httpx

    from arks_common.embedded import NatsServer
    from arks_common.messaging import Bus
    from arks_common.settings import NatsSettings

    nats = NatsServer(ctx.workdir / "nats", log_file=ctx.workdir / "nats.log")
    nats.start()
    port = free_port()
    env = {
        **_env(hub_url),
        "ARKS_NATS__URL": nats.url,
        "ARKS_CACHE__ROOT": str(root),
        "ARKS_HEALTH__PORT": str(port),
        "ARKS_DOWNLOADS__PROGRESS_INTERVAL": "1.0",
    }
    try:
        async with process(
            [venv_bin("arks-model-cache")], log=ctx.workdir / "service.log", env=env
        ):
            async with httpx.AsyncClient() as client:
                for _ in range(300):
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
                else:
                    raise RuntimeError("the model-cache service did not become ready")
            bus = await Bus.connect(NatsSettings(url=nats.url), name="bench-model-cache")
            try:
                yield bus
            finally:
                await bus.close()
    finally:
        nats.stop()


async def _jobs(bus: Any, root: Path, count: int, *, preload: bool = False) -> list[dict[str, Any]]:
    """Start `count` replicas at once; each is ready when its result arrives."""
    from arks_common import subjects
    from arks_common.events import ModelCacheJob, ModelCacheResult, decode_as

    run = uuid.uuid4().hex[:8]
    pending: dict[str, asyncio.Future[tuple[float, Any]]] = {}
    loop = asyncio.get_running_loop()

    async def on_result(msg: Any) -> None:
        result = decode_as(ModelCacheResult, msg.data)
        future = pending.get(result.job_id)
        if future is not None and not future.done():
            future.set_result((time.perf_counter(), result))

    sub = await bus.nc.subscribe(subjects.MODEL_RESULT_ALL, cb=on_result)
    try:
        jobs = [
            ModelCacheJob(
                id=f"bench-{run}-{i}",
                namespace=f"replica-{i}",
                model_name="generated",
                repo_id=REPO,
                cache_root=str(root),
                preload=preload,
            )
            for i in range(count)
        ]
        for job in jobs:
            pending[job.id] = loop.create_future()
        started = time.perf_counter()
        await asyncio.gather(
            *(bus.publish(subjects.model_job_subject(j.namespace, j.model_name), j) for j in jobs)
        )
        done = await asyncio.wait_for(asyncio.gather(*pending.values()), 1800)
    finally:
        await sub.unsubscribe()
    out = []
    for finished, result in done:
        if not result.ok:
            raise RuntimeError(f"replica failed: {result.message}")
        out.append(
            {
                "seconds": round(finished - started, 3),
                "message": result.message,
                "preload_seconds": result.preload_seconds,
            }
        )
    return out


# ----------------------------------------------------------------------------- process mode


async def _startup_floor(hub_url: str) -> float:
    """Seconds for the console script to start, import everything and exit (best of 3)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            venv_bin("arks-model-cache"),
            "download",
            "--help",
            env={**os.environ, **_env(hub_url)},
            stdout=asyncio.subprocess.DEVNULL,
        )
        await proc.wait()
        best = min(best, time.perf_counter() - started)
    return best


async def _processes(
    ctx: BenchContext, hub_url: str, root: Path, count: int
) -> list[dict[str, Any]]:
    async def one(index: int) -> dict[str, Any]:
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            venv_bin("arks-model-cache"),
            "download",
            REPO,
            "--cache-root",
            str(root),
            "--namespace",
            f"replica-{index}",
            "--quiet",
            env={**os.environ, **_env(hub_url)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 1800)
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"download exited {proc.returncode}: {err.decode()[-2000:]}")
        result = json.loads(out.decode().strip().splitlines()[-1])
        return {"seconds": round(seconds, 3), "message": result["message"]}

    return list(await asyncio.gather(*(one(i) for i in range(count))))


# ----------------------------------------------------------------------------- scenarios


async def _scenarios(ctx: BenchContext, hub: Any, mode: str, start: Any) -> dict[str, Any]:
    """cold (empty cache), warm (same cache), then REPLICAS together on an empty cache."""
    files = len(hub.repo(REPO).commits[hub.repo(REPO).branches["main"]].files)
    cold_root = ctx.workdir / f"{mode}-cold"
    hub.reset_log()
    cold = (await start(cold_root, 1))[0]
    cold_downloads = hub.file_downloads(REPO)
    warm = (await start(cold_root, 1))[0]
    warm_downloads = hub.file_downloads(REPO) - cold_downloads
    await asyncio.to_thread(shutil.rmtree, cold_root, True)

    together_root = ctx.workdir / f"{mode}-together"
    hub.reset_log()
    together = await start(together_root, REPLICAS)
    together_downloads = hub.file_downloads(REPO)
    revision_calls = hub.count(path_contains="/revision/")
    await asyncio.to_thread(shutil.rmtree, together_root, True)

    ratio = warm["seconds"] / cold["seconds"]
    slowest = max(r["seconds"] for r in together)
    ctx.note(
        f"{mode}: cold {cold['seconds']:.2f}s, cache hit {warm['seconds']:.3f}s ({ratio:.1%}), "
        f"{REPLICAS} together {slowest:.2f}s (slowest); file GETs at the hub: cold "
        f"{cold_downloads}, hit {warm_downloads}, {REPLICAS} together {together_downloads} "
        f"({files} files)"
    )
    return {
        "cold_s": cold["seconds"],
        "cache_hit_s": warm["seconds"],
        "hit_over_cold": round(ratio, 4),
        "together_s": [r["seconds"] for r in together],
        "together_slowest_s": slowest,
        "file_gets": {
            "cold": cold_downloads,
            "hit": warm_downloads,
            "together": together_downloads,
        },
        "files": files,
        "revision_lookups_together": revision_calls,
        "exactly_one_download": together_downloads == files and warm_downloads == 0,
        "messages": {
            "cold": cold["message"],
            "hit": warm["message"],
            "together": sorted(r["message"] for r in together),
        },
    }


async def run(ctx: BenchContext) -> dict[str, Any]:
    size = 200 * MiB if ctx.quick else 4096 * MiB
    prepared = time.perf_counter()
    hub = await asyncio.to_thread(_hub, size)
    ctx.note(
        f"fake hub serving {REPO}: {size / MiB:.0f} MiB in 4 shards + 3 small files "
        f"(hashed in {time.perf_counter() - prepared:.1f}s)"
    )
    try:
        service_root = ctx.workdir / "service-default"
        async with _service(ctx, hub.url, service_root) as bus:

            async def via_service(root: Path, count: int) -> list[dict[str, Any]]:
                return await _jobs(bus, root, count)

            service = await _scenarios(ctx, hub, "service", via_service)
            warm_root = ctx.workdir / "service-preload"
            await _jobs(bus, warm_root, 1)
            preload = (await _jobs(bus, warm_root, 1, preload=True))[0]
            await asyncio.to_thread(shutil.rmtree, warm_root, True)
            ctx.note(
                f"service: cache hit with preload {preload['seconds']:.2f}s "
                f"(preload_seconds {preload['preload_seconds']})"
            )

        async def via_processes(root: Path, count: int) -> list[dict[str, Any]]:
            return await _processes(ctx, hub.url, root, count)

        processes = await _scenarios(ctx, hub, "process", via_processes)
        floor = await _startup_floor(hub.url)
    finally:
        hub.stop()
    net_hit = max(0.0, processes["cache_hit_s"] - floor)
    net_ratio = net_hit / max(1e-9, processes["cold_s"] - floor)
    processes["startup_floor_s"] = round(floor, 3)
    processes["cache_hit_net_s"] = round(net_hit, 3)
    processes["hit_over_cold_net"] = round(net_ratio, 4)
    ctx.note(
        f"process: start-up floor {floor:.2f}s; cache hit net of it {net_hit:.3f}s "
        f"({net_ratio:.1%} of the cold start net of it)"
    )
    passed = (
        service["hit_over_cold"] <= TARGET_HIT_RATIO
        and net_ratio <= TARGET_HIT_RATIO
        and service["exactly_one_download"]
        and processes["exactly_one_download"]
    )
    return {
        "headline": (
            f"{size / MiB:.0f} MiB model: cold {service['cold_s']:.2f}s (baseline) vs cache hit "
            f"{service['cache_hit_s']:.3f}s ({service['hit_over_cold']:.1%}) via the service, "
            f"{processes['cache_hit_s']:.2f}s ({processes['hit_over_cold']:.1%}; "
            f"{net_ratio:.1%} net of {floor:.1f}s start-up) via a download process; "
            f"{REPLICAS} together: {service['file_gets']['together']} and "
            f"{processes['file_gets']['together']} file GETs for {service['files']} files"
        ),
        "verdict": "PASS" if passed else "BELOW TARGET",
        "model_bytes": size,
        "service": service,
        "process": processes,
        "service_hit_with_preload_s": preload["seconds"],
        "preload_seconds": preload["preload_seconds"],
        "targets": {"hit_over_cold_max": TARGET_HIT_RATIO, "downloads_per_file": 1},
    }
