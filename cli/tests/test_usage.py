"""`arks usage` reads what a real accountant counted (its process, our real brokers)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from arks_common import messaging, subjects
from arks_common.embedded import free_port
from arks_common.store import ResourceStore
from arks_common.testing.builders import make_quota_spec, make_usage_event
from cli.tests.conftest import QUICKSTART, Arks


@pytest.fixture
async def accountant(
    nats_server: object, valkey_server: object, tmp_path: Path
) -> AsyncIterator[None]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARKS_")}
    env.update(
        {
            "ARKS_NATS__URL": nats_server.url,  # type: ignore[attr-defined]
            "ARKS_REDIS__URL": valkey_server.url,  # type: ignore[attr-defined]
            "ARKS_HEALTH__PORT": str(port),
            "ARKS_STATUS__INTERVAL": "0.2",
        }
    )
    log = (tmp_path / "accountant.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "arks_accountant",
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        async with httpx.AsyncClient() as client, asyncio.timeout(45):
            while True:
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.returncode is None, (tmp_path / "accountant.log").read_text()
                await asyncio.sleep(0.1)
        yield
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


async def test_usage_by_token_endpoint_quota_and_namespace(
    arks: Arks,
    bus: messaging.Bus,
    redis: aioredis.Redis,
    valkey_server: object,
    accountant: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ARKS_REDIS__URL", valkey_server.url)  # type: ignore[attr-defined]
    assert (await arks("apply", "-f", str(QUICKSTART))).code == 0
    spec = make_quota_spec(prices=[], price_version="")
    quotas = await bus.kv(subjects.QUOTAS_BUCKET)
    await quotas.put(subjects.namespaced_key("default", "basic-quota"), spec.to_bytes())
    sent = [
        make_usage_event(token_name="example-token", prompt_tokens=10, completion_tokens=20),
        make_usage_event(token_name="example-token", prompt_tokens=5, completion_tokens=7),
        make_usage_event(
            token_name="alice",
            quota=None,
            quota_period=None,
            endpoint="other-model",
            prompt_tokens=3,
            completion_tokens=4,
        ),
    ]
    for event in sent:
        await bus.publish(subjects.usage_subject(event.namespace, event.endpoint), event)
    async with asyncio.timeout(30):
        while True:
            if await redis.hget("arks:usage:{default}:all", "requests") == b"3":
                break
            await asyncio.sleep(0.1)

    by_token = await arks("usage", "--by", "token")
    assert by_token.code == 0, by_token.err
    rows = {line.split()[1]: line.split() for line in by_token.out.splitlines()[1:]}
    assert by_token.out.splitlines()[0].split()[:3] == ["NAMESPACE", "TOKEN", "REQUESTS"]
    assert rows["example-token"][2:7] == ["2", "15", "0", "27", "42"]
    assert rows["alice"][2:7] == ["1", "3", "0", "4", "7"]

    by_endpoint = await arks("usage", "--by", "endpoint")
    endpoints = {line.split()[1]: line.split() for line in by_endpoint.out.splitlines()[1:]}
    assert endpoints["qwen-7b"][2] == "2"
    assert endpoints["other-model"][2] == "1"

    by_quota = await arks("usage", "--by", "quota", "-n", "default")
    header, row = by_quota.out.splitlines()
    assert header.split()[:6] == ["NAMESPACE", "QUOTA", "PERIOD", "PROMPT", "RESPONSE", "TOTAL"]
    assert row.split()[:3] == ["default", "basic-quota", "lifetime"]
    assert "15/100000" in row
    assert "27/500000" in row
    assert "42/600000" in row

    by_namespace = await arks("usage", "--by", "namespace")
    assert by_namespace.out.splitlines()[1].split()[:6] == ["default", "3", "18", "0", "31", "49"]

    # The accountant also wrote the quota's status, which `get` shows through the store.
    async with asyncio.timeout(30):
        while True:
            obj = await ResourceStore(bus).get("ArksQuota", "default", "basic-quota")
            used = {
                u["type"]: u["used"] for u in (obj or {}).get("status", {}).get("quotaStatus", [])
            }
            if used.get("total") == 42:
                break
            await asyncio.sleep(0.1)
