"""Downloads through the real huggingface_hub client against the fake Hub: revisions,
patterns, typed failures, resume after a cut, retries, integrity and the access check."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from arks_common.events import ModelCacheErrorKind
from arks_model_cache.caching import ModelCache
from arks_model_cache.failures import DownloadFailure
from arks_model_cache.settings import DownloadSettings
from arks_model_cache.specs import HubAccess, ModelSpec
from arks_model_cache.testing.fakehub import FakeHub, GeneratedContent

MiB = 1024 * 1024


def contents(path: Path) -> dict[str, bytes]:
    return {
        p.relative_to(path).as_posix(): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


async def test_revision_by_tag_branch_and_commit(hub: FakeHub, access: HubAccess, open_cache):
    repo = hub.add_repo("org/model")
    first = repo.commit({"config.json": '{"v": 1}', "w.safetensors": b"\x01" * 1000}, tag="v1")
    second = repo.commit({"config.json": '{"v": 2}'})
    repo.commit({"config.json": '{"v": "dev"}'}, branch="dev")

    async with open_cache() as cache:
        by_tag = await cache.ensure(ModelSpec("org/model", revision="v1"), access)
        by_branch = await cache.ensure(ModelSpec("org/model", revision="main"), access)
        by_dev = await cache.ensure(ModelSpec("org/model", revision="dev"), access)
        hub.reset_log()
        by_commit = await cache.ensure(ModelSpec("org/model", revision=first), access)

    assert by_tag.commit == first
    assert by_commit.commit == first
    assert by_branch.commit == second
    assert by_tag.path.name == first
    assert by_branch.path.name == second
    assert contents(by_tag.path)["config.json"] == b'{"v": 1}'
    assert contents(by_branch.path)["config.json"] == b'{"v": 2}'
    assert contents(by_dev.path)["config.json"] == b'{"v": "dev"}'
    # main keeps the unchanged LFS file of v1: one blob on disk for both snapshots.
    assert contents(by_branch.path)["w.safetensors"] == b"\x01" * 1000
    assert by_tag.files[1].blob == by_branch.files[1].blob
    # The same commit again moves no bytes: one access check, nothing else.
    assert by_commit.fetched_bytes == 0
    assert [r.path for r in hub.requests()] == [f"/api/models/org/model/revision/{first}"]


async def test_allow_and_ignore_patterns(hub: FakeHub, access: HubAccess, open_cache):
    repo = hub.add_repo("org/patterns")
    repo.commit(
        {
            "config.json": "{}",
            "tokenizer/tokenizer.json": '{"t": 1}',
            "tokenizer/vocab.txt": "a b c",
            "model.safetensors": GeneratedContent(2 * MiB, 3),
            "pytorch_model.bin": GeneratedContent(2 * MiB, 4),
            "README.md": "# readme",
        }
    )
    spec = ModelSpec(
        "org/patterns",
        allow_patterns=("*.json", "*.safetensors"),
        ignore_patterns=("tokenizer/*.txt",),
    )
    async with open_cache() as cache:
        model = await cache.ensure(spec, access)

    assert sorted(f.path for f in model.files) == [
        "config.json",
        "model.safetensors",
        "tokenizer/tokenizer.json",
    ]
    assert hub.file_downloads("org/patterns") == 3
    # 7 entries (6 files, 1 directory) in pages of 3: the client followed the Link header.
    pages = hub.requests(path_contains="/tree/")
    assert [r.query.rsplit("cursor=", 1)[-1] if "cursor" in r.query else "0" for r in pages] == [
        "0",
        "3",
        "6",
    ]
    assert hub.file_downloads("org/patterns", "pytorch_model.bin") == 0
    on_disk = contents(model.path)
    assert on_disk["model.safetensors"] == GeneratedContent(2 * MiB, 3).read(0, 2 * MiB)
    assert model.size_bytes == sum(len(v) for v in on_disk.values())


async def test_missing_repo_unknown_revision_and_missing_file(
    hub: FakeHub, access: HubAccess, open_cache
):
    hub.add_repo("org/present").commit({"config.json": "{}"})
    async with open_cache() as cache:
        with pytest.raises(DownloadFailure) as missing:
            await cache.ensure(ModelSpec("org/absent"), access)
        with pytest.raises(DownloadFailure) as unknown:
            await cache.ensure(ModelSpec("org/present", revision="v9"), access)

    assert missing.value.kind == ModelCacheErrorKind.NOT_FOUND
    assert not missing.value.retryable
    assert "org/absent" in missing.value.message
    assert unknown.value.kind == ModelCacheErrorKind.REVISION_NOT_FOUND
    assert "'v9'" in unknown.value.message
    # Permanent failures are not retried: one request each.
    assert hub.count(path_contains="org/absent") == 1
    assert hub.count(path_contains="org/present") == 1


async def test_gated_repo_needs_an_authorized_token_even_when_cached(hub: FakeHub, open_cache):
    hub.add_repo("org/gated", gated=True, authorized_tokens={"hf_granted"}).commit(
        {"config.json": "{}", "w.safetensors": b"w" * 100}
    )
    spec = ModelSpec("org/gated")
    async with open_cache() as cache:
        with pytest.raises(DownloadFailure) as anonymous:
            await cache.ensure(spec, HubAccess(endpoint=hub.url))
        with pytest.raises(DownloadFailure) as other_account:
            await cache.ensure(spec, HubAccess(endpoint=hub.url, token="hf_someone_else"))
        granted = await cache.ensure(spec, HubAccess(endpoint=hub.url, token="hf_granted"))
        # Cached now, but a caller without access still gets no files.
        with pytest.raises(DownloadFailure) as after:
            await cache.ensure(spec, HubAccess(endpoint=hub.url))

    for failure in (anonymous, other_account, after):
        assert failure.value.kind == ModelCacheErrorKind.GATED
        assert not failure.value.retryable
    assert "no token was given" in anonymous.value.message
    assert "has not been granted access" in other_account.value.message
    assert granted.size_bytes == 102
    assert all(r.authorized for r in hub.requests(path_contains="/resolve/"))


async def test_invalid_token_is_unauthorized(open_cache):
    with FakeHub(tokens={"hf_valid"}) as hub:
        hub.add_repo("org/private", private=True, authorized_tokens={"hf_valid"}).commit(
            {"config.json": "{}"}
        )
        async with open_cache() as cache:
            with pytest.raises(DownloadFailure) as rejected:
                await cache.ensure(
                    ModelSpec("org/private"), HubAccess(endpoint=hub.url, token="hf_bogus")
                )
            with pytest.raises(DownloadFailure) as anonymous:
                await cache.ensure(ModelSpec("org/private"), HubAccess(endpoint=hub.url))
            ok = await cache.ensure(
                ModelSpec("org/private"), HubAccess(endpoint=hub.url, token="hf_valid")
            )
    assert rejected.value.kind == ModelCacheErrorKind.UNAUTHORIZED
    assert "HTTP 401" in rejected.value.message
    # A private repo looks like a missing one to a caller without a token (as on the Hub).
    assert anonymous.value.kind == ModelCacheErrorKind.NOT_FOUND
    assert ok.files[0].path == "config.json"


async def test_cut_transfer_resumes_after_the_first_chunk(
    hub: FakeHub, access: HubAccess, open_cache
):
    big = GeneratedContent(12 * MiB, 11)
    hub.add_repo("org/cut").commit({"big.safetensors": big, "small.bin": GeneratedContent(MiB, 12)})
    hub.cut_next("big.safetensors", after=11 * MiB)
    hub.cut_next("small.bin", after=MiB // 2)
    async with open_cache() as cache:
        model = await cache.ensure(ModelSpec("org/cut"), access)

    gets = {
        name: [r for r in hub.requests(method="GET") if r.path.endswith(name)]
        for name in ("big.safetensors", "small.bin")
    }
    # huggingface_hub keeps whole 10 MiB chunks: the big file resumes at 10 MiB (206) ...
    assert [(r.status, r.range) for r in gets["big.safetensors"]] == [
        (200, None),
        (206, f"bytes={10 * MiB}-"),
    ]
    # ... the small one had no full chunk yet and starts over.
    assert [(r.status, r.range) for r in gets["small.bin"]] == [(200, None), (200, None)]
    on_disk = contents(model.path)
    assert on_disk["big.safetensors"] == big.read(0, big.size)
    assert on_disk["small.bin"] == GeneratedContent(MiB, 12).read(0, MiB)


async def test_transient_errors_are_retried_with_backoff(
    hub: FakeHub, access: HubAccess, open_cache
):
    hub.add_repo("org/flaky").commit({"config.json": "{}"})
    hub.fail_next(503, path_contains="/revision/", times=2)
    async with open_cache() as cache:
        model = await cache.ensure(ModelSpec("org/flaky"), access)
    statuses = [r.status for r in hub.requests(path_contains="/revision/")]
    # huggingface_hub retries a 503 itself a few times too; ours wrap its attempts.
    assert statuses[-1] == 200
    assert statuses.count(503) == 2
    assert model.files[0].path == "config.json"


async def test_transient_errors_give_up_after_the_attempts(
    hub: FakeHub, access: HubAccess, open_cache
):
    hub.add_repo("org/down").commit({"config.json": "{}"})
    hub.fail_next(500, path_contains="/revision/", times=100)
    async with open_cache(downloads=DownloadSettings(attempts=2, backoff_initial=0.01)) as cache:
        with pytest.raises(DownloadFailure) as failed:
            await cache.ensure(ModelSpec("org/down"), access)
    assert failed.value.kind == ModelCacheErrorKind.NETWORK
    assert failed.value.retryable
    assert "HTTP 500" in failed.value.message


async def test_corrupted_transfer_is_detected_discarded_and_fetched_again(
    hub: FakeHub, access: HubAccess, open_cache
):
    weights = GeneratedContent(3 * MiB, 21)
    hub.add_repo("org/corrupt").commit({"config.json": '{"x": 1}', "w.safetensors": weights})
    hub.corrupt("w.safetensors")
    hub.corrupt("config.json")
    async with open_cache(downloads=DownloadSettings(attempts=2, backoff_initial=0.01)) as cache:
        with pytest.raises(DownloadFailure) as failed:
            await cache.ensure(ModelSpec("org/corrupt"), access)
        assert "integrity check failed" in failed.value.message
        assert failed.value.retryable
        snapshot = cache.layout.snapshot_dir("model", "org/corrupt", failed_commit(hub))
        # Nothing corrupt stays behind: the bad files were removed.
        assert not (snapshot / "w.safetensors").exists()
        assert not (snapshot / "config.json").exists()
        hub.uncorrupt("w.safetensors")
        hub.uncorrupt("config.json")
        model = await cache.ensure(ModelSpec("org/corrupt"), access)
    checks = {f.path: f for f in model.files}
    assert contents(model.path)["w.safetensors"] == weights.read(0, weights.size)
    # LFS files are named by their sha256, the others by their git blob sha1.
    assert len(checks["w.safetensors"].etag) == 64
    assert len(checks["config.json"].etag) == 40


def failed_commit(hub: FakeHub) -> str:
    repo = hub.repo("org/corrupt")
    assert repo is not None
    return repo.branches["main"]


async def test_progress_reports_bytes_files_and_rate(hub: FakeHub, access: HubAccess, open_cache):
    weights = GeneratedContent(24 * MiB, 5)
    hub.add_repo("org/progress").commit({"config.json": "{}", "w.safetensors": weights})
    hub.throttle(40 * MiB)
    seen = []

    async def record(snapshot) -> None:
        seen.append(snapshot)

    async with open_cache() as cache:
        model = await cache.ensure(
            ModelSpec("org/progress"), access, on_progress=record, progress_interval=0.05
        )
    assert len(seen) >= 3
    done = [s.bytes_done for s in seen]
    assert done == sorted(done)
    assert any(0 < s.bytes_done < s.bytes_total for s in seen)
    assert any(s.rate_bytes_per_s > 0 for s in seen)
    assert seen[-1].bytes_done == seen[-1].bytes_total == model.size_bytes
    assert seen[-1].files_done == seen[-1].files_total == 2
    # Bounded rate: no more than one report per interval (plus the final one).
    assert len(seen) <= 2 + 1.0 / 0.05 * 2


async def test_cancelled_download_stops_and_can_start_again(
    hub: FakeHub, access: HubAccess, open_cache
):
    hub.add_repo("org/cancel").commit({"w.safetensors": GeneratedContent(24 * MiB, 6)})
    async with open_cache() as cache:
        with hub.hold_downloads() as release:
            task = asyncio.create_task(cache.ensure(ModelSpec("org/cancel"), access))
            assert await asyncio.to_thread(
                hub.wait_for, lambda h: h.started(method="GET", path_contains="/resolve/") >= 1
            )
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            release.set()
        model = await cache.ensure(ModelSpec("org/cancel"), access)
    assert model.size_bytes == 24 * MiB


async def test_materialized_local_dir_links_the_cached_files(
    hub: FakeHub, access: HubAccess, open_cache, tmp_path: Path
):
    from arks_model_cache.materializing import materialize

    hub.add_repo("org/local").commit({"config.json": "{}", "sub/w.safetensors": b"w" * 4096})
    async with open_cache() as cache:
        model = await cache.ensure(ModelSpec("org/local"), access)
        preload = await cache.preload(model)
    target = tmp_path / "models" / "default" / "local"
    assert materialize(model.files, target) == 0
    assert materialize(model.files, target) == 0  # idempotent
    linked = target / "sub" / "w.safetensors"
    assert not linked.is_symlink()
    assert linked.stat().st_ino == model.files[1].blob.stat().st_ino
    assert preload.bytes_read == model.size_bytes
    assert preload.files == 2


async def test_classify_maps_disk_full_and_network_errors(access: HubAccess, cache_root: Path):
    import errno

    import httpx2

    from arks_model_cache.downloading import classify

    spec = ModelSpec("org/x")
    disk = classify(OSError(errno.ENOSPC, "No space left on device"), spec, access)
    assert disk.kind == ModelCacheErrorKind.DISK_FULL
    assert disk.retryable
    network = classify(httpx2.ConnectError("refused"), spec, access)
    assert network.kind == ModelCacheErrorKind.NETWORK
    assert network.retryable
    other = classify(PermissionError(errno.EACCES, "denied"), spec, access)
    assert other.kind == ModelCacheErrorKind.OTHER
    assert not other.retryable


async def test_cache_is_shared_by_two_caches_on_one_root(
    hub: FakeHub, access: HubAccess, cache_root
):
    hub.add_repo("org/shared").commit({"w.safetensors": GeneratedContent(2 * MiB, 8)})
    async with ModelCache.at(cache_root) as first, ModelCache.at(cache_root) as second:
        a = await first.ensure(ModelSpec("org/shared"), access)
        b = await second.ensure(ModelSpec("org/shared"), access)
    assert a.path == b.path
    assert a.fetched_bytes == 2 * MiB
    assert b.fetched_bytes == 0
    assert hub.file_downloads("org/shared") == 1
