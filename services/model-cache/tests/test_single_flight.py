"""Concurrent requests for one snapshot cause one download: in one process (shared
flight), with different credentials (the download lock), and across processes."""

from __future__ import annotations

import asyncio
import json

from arks_model_cache.settings import DownloadSettings
from arks_model_cache.specs import HubAccess, ModelSpec
from arks_model_cache.testing.fakehub import FakeHub, GeneratedContent

MiB = 1024 * 1024


def _model(hub: FakeHub, repo_id: str) -> dict[str, int]:
    files = {
        "config.json": "{}",
        "model-00001-of-00002.safetensors": GeneratedContent(3 * MiB, 1),
        "model-00002-of-00002.safetensors": GeneratedContent(3 * MiB, 2),
    }
    hub.add_repo(repo_id).commit(files)
    return dict.fromkeys(files, 1)


async def _started_gets(hub: FakeHub, n: int) -> None:
    assert await asyncio.to_thread(
        hub.wait_for, lambda h: h.started(method="GET", path_contains="/resolve/") >= n
    )


async def test_two_concurrent_requests_download_once(hub: FakeHub, access: HubAccess, open_cache):
    expected = _model(hub, "org/pair")
    spec = ModelSpec("org/pair")
    async with open_cache() as cache:
        with hub.hold_downloads() as release:
            first = asyncio.create_task(cache.ensure(spec, access))
            await _started_gets(hub, 1)
            second = asyncio.create_task(cache.ensure(spec, access))
            await asyncio.sleep(0.1)  # the second request is waiting on the first's flight
            release.set()
            a, b = await asyncio.gather(first, second)

    assert a.path == b.path
    assert a.commit == b.commit
    assert a.fetched_bytes == a.size_bytes
    assert b.fetched_bytes == 0
    assert b.waited
    assert {f: hub.file_downloads("org/pair", f) for f in expected} == expected
    # The waiter joined the flight: one revision lookup for both.
    assert hub.count(path_contains="/revision/") == 1


async def test_different_credentials_check_access_but_share_the_download(hub: FakeHub, open_cache):
    expected = _model(hub, "org/creds")
    spec = ModelSpec("org/creds")
    async with open_cache() as cache:
        with hub.hold_downloads() as release:
            first = asyncio.create_task(cache.ensure(spec, HubAccess(endpoint=hub.url)))
            await _started_gets(hub, 1)
            second = asyncio.create_task(
                cache.ensure(spec, HubAccess(endpoint=hub.url, token="hf_other"))
            )
            await asyncio.sleep(0.1)
            release.set()
            a, b = await asyncio.gather(first, second)

    assert a.path == b.path
    assert {f: hub.file_downloads("org/creds", f) for f in expected} == expected
    # Each credential asked the Hub itself; the second then found the files in place.
    revision_calls = hub.requests(path_contains="/revision/")
    assert sorted(r.authorized for r in revision_calls) == [False, True]
    assert b.waited
    assert b.fetched_bytes == 0


async def test_two_processes_download_once(hub: FakeHub, run_cli, cache_root):
    expected = _model(hub, "org/procs")
    with hub.hold_downloads() as release:
        args = ("download", "org/procs", "--cache-root", str(cache_root))
        runs = [
            asyncio.create_task(run_cli(*args)),
            # HF_ENDPOINT passes through when no Arks setting names the Hub.
            asyncio.create_task(run_cli(*args, ARKS_HUB__ENDPOINT="", HF_ENDPOINT=hub.url)),
        ]
        # Both processes are up: each asked for the revision; one is transferring.
        assert await asyncio.to_thread(
            hub.wait_for, lambda h: h.started(path_contains="/revision/") >= 2, 30
        )
        await _started_gets(hub, 1)
        await asyncio.sleep(0.3)
        release.set()
        done = await asyncio.gather(*runs)

    assert [d.returncode for d in done] == [0, 0], [d.stderr[-2000:] for d in done]
    results = [json.loads(d.stdout.strip().splitlines()[-1]) for d in done]
    assert results[0]["path"] == results[1]["path"]
    assert {f: hub.file_downloads("org/procs", f) for f in expected} == expected
    messages = sorted(r["message"].split(": ", 1)[1] for r in results)
    assert messages == ["downloaded 6.0 MiB", "downloaded once by a concurrent request"]


async def test_transfers_queue_for_slots_but_cache_hits_do_not(
    hub: FakeHub, access: HubAccess, open_cache
):
    for name, seed in (("first", 1), ("second", 2), ("cached", 3)):
        hub.add_repo(f"org/{name}").commit({"w.safetensors": GeneratedContent(MiB, seed)})
    async with open_cache(downloads=DownloadSettings(max_concurrent=1)) as cache:
        await cache.ensure(ModelSpec("org/cached"), access)
        with hub.hold_downloads() as release:
            first = asyncio.create_task(cache.ensure(ModelSpec("org/first"), access))
            await _started_gets(hub, 2)  # the cached model's GET, then the first's
            second = asyncio.create_task(cache.ensure(ModelSpec("org/second"), access))
            assert await asyncio.to_thread(
                hub.wait_for, lambda h: h.count(path_contains="org/second/tree/") == 1
            )
            hit = await asyncio.wait_for(cache.ensure(ModelSpec("org/cached"), access), 10)
            await asyncio.sleep(0.2)
            # The second transfer has listed its files but waits for the only slot.
            assert hub.started(path_contains="org/second/resolve/") == 0
            release.set()
            await asyncio.gather(first, second)
    assert hit.fetched_bytes == 0
    assert hub.file_downloads("org/second") == 1
