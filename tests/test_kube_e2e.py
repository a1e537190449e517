"""Arks on Kubernetes as a user meets it: `arks cluster up`; `arks up --platform
kubernetes --detach` (NATS, Valkey and the services on this machine, the reconciler
driving the cluster); `kubectl apply -f examples/quickstart/kubernetes.yaml` (upstream's
quickstart with `runtime: sim`); the upstream README's request with `sk-test123456`
answers 200 through the router; `kubectl get arkapp,aep,aq` shows Running and the quota
used; `kubectl scale` (the scale subresource) changes the Ready pods and what is routed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from arks_cli.testing import Result, arks_process
from arks_common.embedded import free_port
from arks_devcluster.testing import Kubectl
from arks_reconciler.testing import eventually

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart" / "kubernetes.yaml"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _arks(*args: str, cwd: Path) -> Result:
    return arks_process(*args, cwd=cwd, timeout=180)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[Kubectl, str]]:
    root = tmp_path / ".arks"
    started = await asyncio.to_thread(_arks, "cluster", "up", "--port", "0", cwd=tmp_path)
    assert started.code == 0, started.err + started.out
    router_port = free_port()
    try:
        up = await asyncio.to_thread(
            _arks,
            "up",
            "--detach",
            "--platform",
            "kubernetes",
            "--router-port",
            str(router_port),
            "--nats-port",
            str(free_port()),
            "--valkey-port",
            str(free_port()),
            cwd=tmp_path,
        )
        assert up.code == 0, up.err + up.out
        assert "kubectl apply" in up.out, up.out  # the hint of the kubernetes platform
        try:
            yield Kubectl(root / "kubeconfig"), f"http://127.0.0.1:{router_port}"
        finally:
            await asyncio.to_thread(_arks, "down", cwd=tmp_path)
    finally:
        await asyncio.to_thread(_arks, "cluster", "down", cwd=tmp_path)


async def _app(kubectl: Kubectl) -> dict[str, Any]:
    return (await kubectl.check("get", "arkapp", "app-qwen", "-o", "json")).json()


async def _chat(router: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as http:
        return await http.post(
            f"{router}/v1/chat/completions",
            headers={"Authorization": "Bearer sk-test123456"},
            json={
                "model": "qwen-7b",
                "messages": [{"role": "user", "content": "Hello"}],
                "max_tokens": 8,
            },
        )


async def test_the_upstream_quickstart_on_the_kubernetes_platform(stack) -> None:
    kubectl, router = stack
    await kubectl.check("apply", "-f", str(QUICKSTART))

    async def running() -> bool:
        status = (await _app(kubectl)).get("status") or {}
        return status.get("phase") == "Running" and status.get("readyReplicas") == 1

    await eventually(running, within=120, what="app-qwen Running")

    async def listed() -> bool:
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.get(
                f"{router}/v1/models", headers={"Authorization": "Bearer sk-test123456"}
            )
        return answer.status_code == 200 and "qwen-7b" in answer.text

    await eventually(listed, within=120, what="qwen-7b listed by the router")
    answer = await _chat(router)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"]

    async def quota_used() -> str | None:
        table = await kubectl.check("get", "arkapp,aep,aq")
        quota = (await kubectl.check("get", "aq", "basic-quota", "-o", "json")).json()
        used = [q.get("used", 0) for q in (quota.get("status") or {}).get("quotaStatus") or []]
        return table.out if used and max(used) > 0 else None

    table = await eventually(quota_used, within=120, what="the quota's usage in its status")
    assert "Running" in table

    await kubectl.check("scale", "arkapp", "app-qwen", "--replicas=2")

    async def two_ready() -> bool:
        status = (await _app(kubectl)).get("status") or {}
        pods = (
            await kubectl.check(
                "get",
                "pods",
                "-l",
                "arks.ai/application=app-qwen,arks.ai/work-load-role=leader",
                "-o",
                "json",
            )
        ).json()["items"]
        ready = [
            p
            for p in pods
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions") or []
            )
        ]
        return status.get("readyReplicas") == 2 and len(ready) == 2

    await eventually(two_ready, within=120, what="two Ready replicas after kubectl scale")
    endpoint = (await kubectl.check("get", "aep", "qwen-7b", "-o", "json")).json()
    ready = next(c for c in endpoint["status"]["conditions"] if c["type"] == "Ready")

    async def routed_two() -> bool:
        fresh = (await kubectl.check("get", "aep", "qwen-7b", "-o", "json")).json()
        cond = next(c for c in fresh["status"]["conditions"] if c["type"] == "Ready")
        return "2 backend(s)" in cond["message"]

    await eventually(routed_two, within=120, what="two routed backends")
    assert ready["status"] == "True"
    answer = await _chat(router)
    assert answer.status_code == 200, answer.text
