"""No plaintext bearer token is kept anywhere the resource store writes: not in the
current object, not in the bucket's history, not in JetStream's files on disk."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats.js.errors
import orjson
import pytest

from arks_common import subjects
from arks_common.embedded import NatsServer
from arks_common.messaging import Bus
from arks_common.resources import hash_token, parse_resource
from arks_common.store import ObjectRef, ResourceStore
from arks_common.testing import builders

SECRET = "sk-do-not-store-me-4d1f7a"
REF = ObjectRef("ArksToken", "default", "example-token")


def _token(secret: str = SECRET, rpm: int = 5) -> dict:  # type: ignore[type-arg]
    obj = builders.make_token(token=secret)
    obj["spec"]["qos"][0]["rateLimits"] = [{"type": "rpm", "value": rpm}]
    return obj


async def _history(bus: Bus) -> list[bytes]:
    kv = await bus.kv(subjects.RESOURCES_BUCKET)
    try:
        return [e.value or b"" for e in await kv.history(REF.key)]
    except nats.js.errors.NoKeysError:
        return []


async def test_a_token_is_stored_as_its_digest_and_still_verifiable(bus: Bus) -> None:
    store = ResourceStore(bus)
    created = await store.create(_token())
    assert "token" not in created["spec"]
    assert created["spec"]["tokenSha256"] == hash_token(SECRET)
    stored = await store.get(REF.kind, REF.namespace, REF.name)
    assert stored is not None
    assert parse_resource(stored).spec.token_hash() == hash_token(SECRET)  # type: ignore[union-attr]
    assert not [v for v in await _history(bus) if SECRET.encode() in v]


async def test_applying_upstream_yaml_with_a_token_again_is_unchanged(bus: Bus) -> None:
    store = ResourceStore(bus)
    _, first = await store.apply(_token())
    _, again = await store.apply(_token())
    _, changed = await store.apply(_token(rpm=9))
    assert (first, again, changed) == ("created", "unchanged", "configured")
    # Every token write rolls the key up: one revision, never older ones.
    assert len(await _history(bus)) == 1


async def test_delete_purges_every_revision(bus: Bus) -> None:
    store = ResourceStore(bus)
    await store.apply(_token())
    await store.apply(_token(rpm=9))
    await store.update_status("ArksToken", "default", "example-token", lambda s: {"x": 1})
    assert await store.delete("ArksToken", "default", "example-token")
    history = await _history(bus)
    assert len(history) <= 1  # at most the purge marker
    assert all(v == b"" for v in history)
    assert await store.get("ArksToken", "default", "example-token") is None


async def test_tokens_stored_in_plaintext_by_an_older_arks_are_scrubbed(bus: Bus) -> None:
    kv = await bus.kv(subjects.RESOURCES_BUCKET)
    legacy = _token()
    legacy["metadata"].update({"uid": "u", "generation": 1})
    for rpm in (1, 2, 3):  # three plaintext revisions in the history
        legacy["spec"]["qos"][0]["rateLimits"] = [{"type": "rpm", "value": rpm}]
        await kv.put(REF.key, orjson.dumps(legacy))
    store = ResourceStore(bus)
    assert await store.scrub_tokens() == 1
    history = await _history(bus)
    assert len(history) == 1
    assert SECRET.encode() not in history[0]
    stored = await store.get("ArksToken", "default", "example-token")
    assert stored is not None
    assert stored["spec"]["tokenSha256"] == hash_token(SECRET)
    assert await store.scrub_tokens() == 0


async def test_no_token_bytes_reach_jetstreams_files(
    secured_nats_server: NatsServer, admin_bus: Bus
) -> None:
    store = ResourceStore(admin_bus)
    await store.create(_token())
    await store.apply(_token(rpm=9))
    await store.delete("ArksToken", "default", "example-token")
    await store.apply(_token(rpm=7))
    await admin_bus.nc.flush()
    assert await asyncio.to_thread(_files_holding, Path(secured_nats_server.data_dir)) == []


def _files_holding(directory: Path) -> list[str]:
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert files
    return [str(p) for p in files if SECRET.encode() in p.read_bytes()]


def test_the_digest_must_match_the_token_when_both_are_given() -> None:
    obj = _token()
    obj["spec"]["tokenSha256"] = hash_token("another")
    with pytest.raises(Exception, match=r"not the sha256 of spec\.token"):
        parse_resource(obj)
    del obj["spec"]["token"]
    assert parse_resource(obj).spec.token_hash() == hash_token("another")  # type: ignore[union-attr]
