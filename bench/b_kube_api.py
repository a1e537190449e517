"""The dev cluster's API server: creates, patches and watch events per second, one client
and 8 concurrent clients, and the latency of a keep-alive request with and without
TCP_NODELAY on the server's accepted sockets.

Recipe: `arks-devcluster serve --api-only` as its own process (nothing pinned: server and this
process share both cores), driven over HTTP/1.1 keep-alive by aiohttp (the HTTP client
under kubernetes-asyncio) from this process:

- creates: ConfigMaps POSTed as fast as answered, by 1 client, then by 8 concurrent
  clients (one connection each);
- patches: JSON merge patches of one label on existing ConfigMaps, 1 then 8 clients;
- watch events: 1 and then 8 watches open on ConfigMaps of a namespace while one client
  creates objects there; the rate is events delivered to all watchers from the first
  create to the last event received, every event checked to arrive exactly once;
- keep-alive latency: sequential GETs of one object on one connection, against the server
  as it is (TCP_NODELAY) and, in the same run, against a second server started with
  `--no-tcp-nodelay` (a listening socket that does not name TCP, as before the fix: the
  baseline). p50/p99 of every request.

Targets: none for the rates (they are this machine's figures); the fix must bring the
keep-alive p50 under 5 ms where the baseline sits at the delayed-ACK timer (~40 ms).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import yaml

from bench.common import BenchContext, free_port, median, percentile, process, venv_bin

CLIENTS = 8
TARGET_P50_MS = 5.0


@asynccontextmanager
async def _server(ctx: BenchContext, name: str, *extra: str) -> AsyncIterator[tuple[str, str]]:
    """A standalone dev cluster: (base URL, bearer token)."""
    kubeconfig = ctx.workdir / f"{name}.kubeconfig"
    port = free_port()
    argv = [venv_bin("arks-devcluster"), "serve", "--port", str(port), "--api-only"]
    argv += ["--kubeconfig-out", str(kubeconfig), *extra]
    async with process(argv, log=ctx.workdir / f"{name}.log"):
        deadline = time.monotonic() + 30
        while not kubeconfig.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: no kubeconfig after 30 s")
            await asyncio.sleep(0.05)
        doc = yaml.safe_load(await asyncio.to_thread(kubeconfig.read_text))
        yield doc["clusters"][0]["cluster"]["server"], doc["users"][0]["user"]["token"]


def _session(token: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {token}"},
        connector=aiohttp.TCPConnector(limit=0),
    )


def _configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}


async def _split(total: int, clients: int, work: Any) -> float:
    """Run `work(client, start, count)` for `clients` clients sharing `total`; seconds."""
    share = total // clients
    started = time.perf_counter()
    await asyncio.gather(*(work(c, c * share, share) for c in range(clients)))
    return time.perf_counter() - started


async def _rates(url: str, token: str, total: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    collection = f"{url}/api/v1/namespaces/default/configmaps"
    async with _session(token) as http:
        for clients in (1, CLIENTS):
            prefix = f"c{clients}-"

            async def create(_: int, start: int, count: int, prefix: str = prefix) -> None:
                for i in range(start, start + count):
                    async with http.post(collection, json=_configmap(f"{prefix}{i}")) as r:
                        assert r.status == 201, await r.text()

            async def patch(_: int, start: int, count: int, prefix: str = prefix) -> None:
                headers = {"Content-Type": "application/merge-patch+json"}
                for i in range(start, start + count):
                    body = json.dumps({"metadata": {"labels": {"n": str(i)}}})
                    async with http.patch(
                        f"{collection}/{prefix}{i}", data=body, headers=headers
                    ) as r:
                        assert r.status == 200, await r.text()

            seconds = await _split(total, clients, create)
            out[f"creates_per_s_{clients}_clients"] = round(total / seconds)
            seconds = await _split(total, clients, patch)
            out[f"patches_per_s_{clients}_clients"] = round(total / seconds)
    return out


async def _watch_rate(url: str, token: str, watchers: int, total: int) -> float:
    namespace = f"watch{watchers}"
    base = f"{url}/api/v1/namespaces/{namespace}/configmaps"
    async with _session(token) as http:
        async with http.get(base) as listed:
            since = (await listed.json())["metadata"]["resourceVersion"]
        seen: list[set[str]] = [set() for _ in range(watchers)]
        ready = [asyncio.Event() for _ in range(watchers)]
        done = asyncio.Event()
        last = [0.0]

        async def watch(index: int) -> None:
            params = {"watch": "true", "resourceVersion": since, "timeoutSeconds": "600"}
            async with http.get(base, params=params, timeout=aiohttp.ClientTimeout()) as r:
                ready[index].set()
                async for raw in r.content:
                    event = json.loads(raw)
                    name = event["object"]["metadata"]["name"]
                    assert name not in seen[index], f"{name} twice"
                    seen[index].add(name)
                    if all(len(s) == total for s in seen):
                        last[0] = time.perf_counter()
                        done.set()
                    if len(seen[index]) == total:
                        return

        tasks = [asyncio.create_task(watch(i)) for i in range(watchers)]
        for event in ready:
            await asyncio.wait_for(event.wait(), 30)
        started = time.perf_counter()
        for i in range(total):
            async with http.post(base, json=_configmap(f"w{i}")) as r:
                assert r.status == 201, await r.text()
        await asyncio.wait_for(done.wait(), 120)
        await asyncio.gather(*tasks)
        return watchers * total / (last[0] - started)


async def _latency(url: str, token: str, requests: int) -> dict[str, float]:
    async with _session(token) as http:
        name = f"lat-{time.monotonic_ns()}"
        collection = f"{url}/api/v1/namespaces/default/configmaps"
        async with http.post(collection, json=_configmap(name)) as r:
            assert r.status == 201
        samples = []
        for _ in range(requests):
            started = time.perf_counter()
            async with http.get(f"{collection}/{name}") as r:
                await r.read()
            samples.append((time.perf_counter() - started) * 1000)
    return {
        "p50_ms": round(median(samples), 2),
        "p99_ms": round(percentile(samples, 99), 2),
        "requests": requests,
    }


async def run(ctx: BenchContext) -> dict[str, Any]:
    total = 400 if ctx.quick else 4000
    events = 200 if ctx.quick else 2000
    latency_requests = 50 if ctx.quick else 300
    result: dict[str, Any] = {}
    async with _server(ctx, "nodelay") as (url, token):
        result.update(await _rates(url, token, total))
        for watchers in (1, CLIENTS):
            rate = await _watch_rate(url, token, watchers, events)
            result[f"watch_events_per_s_{watchers}_watchers"] = round(rate)
        result["keepalive_nodelay"] = await _latency(url, token, latency_requests)
    async with _server(ctx, "baseline", "--no-tcp-nodelay") as (url, token):
        result["keepalive_without_nodelay"] = await _latency(url, token, latency_requests)
    fixed = result["keepalive_nodelay"]["p50_ms"]
    before = result["keepalive_without_nodelay"]["p50_ms"]
    ctx.note(
        f"creates/s 1 client {result['creates_per_s_1_clients']}, {CLIENTS} clients "
        f"{result[f'creates_per_s_{CLIENTS}_clients']}; patches/s "
        f"{result['patches_per_s_1_clients']} / {result[f'patches_per_s_{CLIENTS}_clients']}; "
        f"watch events/s {result['watch_events_per_s_1_watchers']} (1 watcher) / "
        f"{result[f'watch_events_per_s_{CLIENTS}_watchers']} ({CLIENTS} watchers)"
    )
    result["headline"] = (
        f"keep-alive GET p50 {fixed} ms with TCP_NODELAY vs {before} ms without; "
        f"{result['creates_per_s_1_clients']} creates/s, "
        f"{result['patches_per_s_1_clients']} patches/s (1 client)"
    )
    result["verdict"] = "pass" if fixed <= TARGET_P50_MS < before else "FAIL"
    return result
