"""Size limit and eviction: least recently used first, never what a lease holds (in use
or pinned), shared blobs kept, stale leftovers collected."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from arks_model_cache import cli
from arks_model_cache.caching import Hold
from arks_model_cache.specs import HubAccess, ModelSpec
from arks_model_cache.testing.fakehub import FakeHub, GeneratedContent

MiB = 1024 * 1024


def _add(hub: FakeHub, repo_id: str, seed: int) -> ModelSpec:
    hub.add_repo(repo_id).commit({"w.safetensors": GeneratedContent(2 * MiB, seed)})
    return ModelSpec(repo_id)


async def test_lru_snapshot_is_evicted_above_the_size_limit(
    hub: FakeHub, access: HubAccess, open_cache
):
    a, b, c = (_add(hub, f"org/{n}", i) for i, n in enumerate("abc"))
    async with open_cache(size_limit=5 * MiB) as cache:
        model_a = await cache.ensure(a, access)
        model_b = await cache.ensure(b, access)
        await asyncio.sleep(0.01)
        await cache.ensure(a, access)  # a cache hit: a is now more recent than b
        model_c = await cache.ensure(c, access)
        inventory = await cache.inventory()

    assert {r.repo_id for r in inventory.repos if r.snapshots} == {"org/a", "org/c"}
    assert inventory.total_bytes <= 5 * MiB
    assert model_a.path.is_dir()
    assert model_c.path.is_dir()
    assert not model_b.path.exists()
    assert not model_b.files[0].blob.exists()
    layout = model_b.path.parents[2]
    assert not (layout / "models--org--b" / "refs" / "main").exists()
    entries = model_b.path.parents[4] / "arks" / "entries"
    assert not list(entries.glob("models--org--b--*.json"))


async def test_leased_and_pinned_snapshots_are_never_evicted(
    hub: FakeHub, access: HubAccess, open_cache
):
    used, pinned, idle = (
        _add(hub, f"org/{n}", i) for i, n in enumerate(("used", "pinned", "idle"))
    )
    async with open_cache() as cache:
        await cache.ensure(used, access, holds=[Hold("app.default.used")])
        await cache.ensure(pinned, access, holds=[Hold("pin.default.pinned", pinned=True)])
        await cache.ensure(idle, access)

        report = await cache.evict(target_bytes=0)
        assert [e.repo_id for e in report.evicted] == ["org/idle"]
        assert not report.satisfied  # the rest is held
        assert report.after_bytes == 4 * MiB

        assert await cache.release("app.default.used")
        report = await cache.evict(target_bytes=0)
        assert [e.repo_id for e in report.evicted] == ["org/used"]
        inventory = await cache.inventory()
    assert [r.repo_id for r in inventory.repos if r.snapshots] == ["org/pinned"]


async def test_expired_leases_and_dead_holders_protect_nothing(
    hub: FakeHub, access: HubAccess, open_cache
):
    brief, orphan = _add(hub, "org/brief", 1), _add(hub, "org/orphan", 2)
    async with open_cache() as cache:
        model = await cache.ensure(brief, access, holds=[Hold("job.default.brief", 0.05)])
        other = await cache.ensure(orphan, access)
        proc = await asyncio.create_subprocess_exec("true")
        await proc.wait()
        await cache.lease(
            "app.default.orphan",
            repo_type="model",
            repo_id="org/orphan",
            commit=other.commit,
            pid=proc.pid,
        )
        await asyncio.sleep(0.1)
        report = await cache.evict(target_bytes=0)
        removed = await cache.collect_garbage(3600)
    assert sorted(e.repo_id for e in report.evicted) == ["org/brief", "org/orphan"]
    assert not model.path.exists()
    assert removed == 0
    assert cache.leases.all() == []  # dead lease files were pruned


async def test_a_blob_shared_with_a_kept_snapshot_survives(
    hub: FakeHub, access: HubAccess, open_cache
):
    shared = GeneratedContent(2 * MiB, 7)
    repo = hub.add_repo("org/versions")
    old = repo.commit({"w.safetensors": shared, "config.json": '{"v": 1}'}, tag="v1")
    repo.commit({"config.json": '{"v": 2}'})
    async with open_cache() as cache:
        v1 = await cache.ensure(ModelSpec("org/versions", revision="v1"), access)
        await asyncio.sleep(0.01)
        v2 = await cache.ensure(ModelSpec("org/versions"), access)
        report = await cache.evict(target_bytes=2 * MiB + 8)
    assert [(e.commit, e.freed_bytes) for e in report.evicted] == [(old, len('{"v": 1}'))]
    weights = {f.path: f.blob for f in v2.files}["w.safetensors"]
    assert weights.exists()
    assert not v1.path.exists()
    assert (v2.path / "w.safetensors").read_bytes() == shared.read(0, shared.size)


async def test_garbage_collection_removes_only_stale_leftovers(open_cache, cache_root: Path):
    async with open_cache() as cache:
        blobs = cache.layout.storage_dir("model", "org/left") / "blobs"
        blobs.mkdir(parents=True)
        stale = blobs / "abc.0123abcd.incomplete"
        fresh = blobs / "def.4567cdef.incomplete"
        stale.write_bytes(b"x" * 100)
        fresh.write_bytes(b"y" * 50)
        old = time.time() - 7200
        os.utime(stale, (old, old))
        freed = await cache.collect_garbage(3600)
    assert freed == 100
    assert not stale.exists()
    assert fresh.exists()


def test_cli_downloads_leases_lists_and_evicts(hub: FakeHub, cache_root: Path, capsys):
    """The administration commands, in-process (the console script is `cli.main`)."""
    _add(hub, "org/admin", 9)
    root = ["--cache-root", str(cache_root)]

    def run(*argv: str) -> tuple[int, str]:
        code = cli.main(list(argv))
        return code, capsys.readouterr().out

    code, out = run("download", "org/admin", "--endpoint", hub.url, "--quiet", *root)
    assert code == 0
    result = json.loads(out)
    commit, path = result["commit"], Path(result["path"])

    code, out = run("lease", "app.team.admin", "--repo", "org/admin", "--revision", "main", *root)
    assert code == 0
    assert json.loads(out)["commit"] == commit

    code, out = run("list", "--json", *root)
    holders = {s["commit"]: s["holders"] for s in json.loads(out)["snapshots"]}
    assert holders == {commit: ["app.team.admin", "job.default.admin"]}

    assert run("release", "job.default.admin", *root)[0] == 0
    code, out = run("evict", "--limit", "0", *root)
    assert code == 1  # everything left is held
    assert path.exists()

    assert run("release", "app.team.admin", *root)[0] == 0
    code, out = run("evict", "--limit", "0", *root)
    assert code == 0
    assert f"evicted org/admin@{commit}" in out
    assert not path.exists()
