"""Offline re-use of cached models, and the one-shot `download` of a Kubernetes Job:
exit codes, termination log, local dir, proxy, HF_HUB_OFFLINE and SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest

from arks_common.events import ModelCacheErrorKind
from arks_model_cache import cli
from arks_model_cache.cli import EXIT_CODES, EXIT_TERMINATED
from arks_model_cache.failures import DownloadFailure
from arks_model_cache.specs import HubAccess, ModelSpec
from arks_model_cache.testing.fakehub import FakeHub, GeneratedContent

MiB = 1024 * 1024


async def test_offline_reuses_what_is_cached(open_cache):
    with FakeHub() as hub:
        repo = hub.add_repo("org/off")
        commit = repo.commit({"config.json": "{}", "w.safetensors": b"w" * 64}, tag="v1")
        online = HubAccess(endpoint=hub.url)
        async with open_cache() as cache:
            first = await cache.ensure(ModelSpec("org/off", revision="v1"), online)
        endpoint = hub.url
    # The hub is gone now.
    offline = HubAccess(endpoint=endpoint, offline=True)
    unreachable = HubAccess(endpoint=endpoint)
    async with open_cache() as cache:
        by_tag = await cache.ensure(ModelSpec("org/off", revision="v1"), offline)
        by_commit = await cache.ensure(ModelSpec("org/off", revision=commit), offline)
        fallback = await cache.ensure(ModelSpec("org/off", revision="v1"), unreachable)
        with pytest.raises(DownloadFailure) as missing_offline:
            await cache.ensure(ModelSpec("org/other"), offline)
        with pytest.raises(DownloadFailure) as missing_unreachable:
            await cache.ensure(ModelSpec("org/other"), unreachable)

    for model in (by_tag, by_commit, fallback):
        assert model.path == first.path
        assert not model.from_hub
        assert model.fetched_bytes == 0
    assert missing_offline.value.kind == ModelCacheErrorKind.NETWORK
    assert not missing_offline.value.retryable  # offline: waiting will not help
    assert "offline mode" in missing_offline.value.message
    assert missing_unreachable.value.kind == ModelCacheErrorKind.NETWORK
    assert missing_unreachable.value.retryable


async def test_offline_with_missing_files_is_a_failure(hub: FakeHub, access, open_cache):
    hub.add_repo("org/partial").commit({"config.json": "{}", "w.safetensors": b"w" * 64})
    async with open_cache() as cache:
        await cache.ensure(ModelSpec("org/partial", allow_patterns=("*.json",)), access)
        with pytest.raises(DownloadFailure) as failed:
            await cache.ensure(ModelSpec("org/partial"), HubAccess(hub.url, offline=True))
    assert failed.value.kind == ModelCacheErrorKind.NETWORK
    assert not failed.value.retryable


def test_download_exit_codes_say_what_failed(
    hub: FakeHub, cache_root: Path, capsys, monkeypatch: pytest.MonkeyPatch
):
    hub.add_repo("org/gated", gated=True, authorized_tokens={"hf_env"}).commit(
        {"config.json": "{}"}
    )
    hub.add_repo("org/ok").commit({"config.json": "{}"})
    root = ["--cache-root", str(cache_root), "--endpoint", hub.url, "--quiet"]

    def run(*argv: str) -> tuple[int, dict[str, object]]:
        code = cli.main(list(argv))
        return code, json.loads(capsys.readouterr().out)

    missing = run("download", "org/absent", *root)
    gated = run("download", "org/gated", *root)
    revision = run("download", "org/ok", "--revision", "v404", *root)
    assert missing[0] == EXIT_CODES[ModelCacheErrorKind.NOT_FOUND] == 10
    assert gated[0] == EXIT_CODES[ModelCacheErrorKind.GATED] == 12
    assert revision[0] == EXIT_CODES[ModelCacheErrorKind.REVISION_NOT_FOUND] == 13
    assert gated[1]["error_kind"] == "gated"
    assert gated[1]["ok"] is False
    assert gated[1]["retryable"] is False
    assert "gated" in str(gated[1]["message"])
    # HF_TOKEN passes through when no Arks setting or secret names a token.
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    granted = run("download", "org/gated", *root)
    assert granted[0] == 0
    assert granted[1]["ok"] is True


async def test_download_job_container_proxy_termination_log_and_offline(
    hub: FakeHub, run_cli, cache_root: Path, tmp_path: Path
):
    hub.add_repo("org/ok").commit({"config.json": "{}", "sub/w.safetensors": b"w" * 2048})
    log = tmp_path / "termination-log"
    local = tmp_path / "models" / "default" / "ok"
    # The endpoint cannot be resolved: only the proxy (the fake hub) can serve it.
    ok = await run_cli(
        "download",
        "org/ok",
        "--endpoint",
        "http://hub.invalid",
        "--proxy",
        hub.url,
        "--local-dir",
        str(local),
        "--preload",
        "--cache-root",
        str(cache_root),
        "--termination-log",
        str(log),
    )
    assert ok.returncode == 0, ok.stderr
    assert hub.requests()
    assert all(r.proxied for r in hub.requests())
    result = json.loads(log.read_text())
    assert result == json.loads(ok.stdout)
    assert result["ok"] is True
    assert result["path"] == str(local)
    assert result["preload_seconds"] >= 0
    assert (local / "sub" / "w.safetensors").read_bytes() == b"w" * 2048
    assert "progress" in ok.stderr

    offline, not_cached = await asyncio.gather(
        run_cli("download", "org/ok", "--cache-root", str(cache_root), HF_HUB_OFFLINE="1"),
        run_cli("download", "org/elsewhere", "--cache-root", str(cache_root), HF_HUB_OFFLINE="1"),
    )
    assert offline.returncode == 0, offline.stderr
    assert "without the Hub" in json.loads(offline.stdout)["message"]
    assert not_cached.returncode == EXIT_CODES[ModelCacheErrorKind.NETWORK] == 20


async def test_sigterm_stops_a_download(hub: FakeHub, cache_root: Path, tmp_path: Path):
    hub.add_repo("org/slow").commit({"w.safetensors": GeneratedContent(24 * MiB, 3)})
    script = Path(sys.executable).parent / "arks-model-cache"
    with hub.hold_downloads():
        proc = await asyncio.create_subprocess_exec(
            str(script),
            "download",
            "org/slow",
            "--endpoint",
            hub.url,
            "--cache-root",
            str(cache_root),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert await asyncio.to_thread(
            hub.wait_for, lambda h: h.started(method="GET", path_contains="/resolve/") >= 1, 30
        )
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
    # Bytes flow again: the transfer stops at its next chunk and the process exits.
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == EXIT_TERMINATED, err.decode()[-2000:]
    assert hub.file_downloads("org/slow") == 1
    snapshots = cache_root / "hub" / "models--org--slow" / "snapshots"
    assert not await asyncio.to_thread(lambda: list(snapshots.glob("*/w.safetensors")))
