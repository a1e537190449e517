"""The reconciler's Kubernetes platform at scale (issue 13): 1,000 sim applications of one
model behind 10 endpoints reach Running, with their routes in KV, on the dev cluster.

Recipe, beside one nats-server:

- the dev cluster in this process's event loop (its in-process form, as the platform's
  tests use it): its API server (`serve(FakeKubeApi(crds=cluster_crds()))`), the
  workload controllers and the kubelet, with `arks/engine-sim` *simulated* (an image rule
  `simulate: true`: the container is Running and Ready at once, with a pod IP, and no
  process), one node with room for every pod;
- the reconciler as its own process (`arks-reconciler`, `ARKS_PLATFORM=kubernetes`,
  `--workers` queue workers, driver `--driver`, default `lws`), as in a cluster where it
  never shares an event loop with the API server, against the server's URL over HTTP;
  it exits 75 if it loses its Lease (`--lease-deadline`), which fails the run;
- once it leads, the bench creates (in-process, not over HTTP) 1 ArksModel (storage.pvc,
  no source: Ready at once), `--endpoints` ArksEndpoints `model-<i>` and `--apps`
  ArksApplications (runtime sim, 1 replica, servedModelName `model-<i mod endpoints>`);
- measured: the time until every application is `Running` with 1 ready replica, and
  until every endpoint's RouteTable in KV (`arks-routes`, `<ns>.<endpoint>`) lists all
  its applications' backends; the API requests the reconciler made meanwhile (the
  server's request log: the bench, the controllers and the kubelet write in-process, so
  every request in it is the reconciler's), per application and by kind; then one resync
  period (plus a margin) during which a steady cluster must see no write but Lease
  renewals and Events, and no change to the routes bucket.

Baseline in the same run: a fresh dev cluster (controllers and kubelet as above) is given
the very workload objects the reconciler wrote (LeaderWorkerSets or Deployments and
Services, without owner references), POSTed over HTTP by `--workers` concurrent clients;
the time until every pod is Ready is what the cluster itself costs for these workloads.
The reconciler's time is reported as a multiple of it.

Targets: every application Running and routed within `--timeout`; API requests per
application ≤ 12; no write during the resync period (Leases and Events aside).

python -m bench kube_scale                                   # 1,000 apps, 10 endpoints
python -m bench kube_scale --quick                           # 100 apps, 10 endpoints
python -m bench kube_scale --apps 5 --endpoints 2 --workers 4 --timeout 120
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import copy
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from arks_common import events, messaging, subjects
from arks_common.embedded import NatsServer
from arks_common.settings import (
    NatsSettings,
)
from arks_devcluster import FakeKubeApi, serve
from arks_devcluster.cluster import cluster_crds, running_workloads
from arks_devcluster.kubelet import ClusterConfig, ImageRule, NodeConfig, default_config
from arks_reconciler.testing import ReconcilerProcess
from bench.common import BenchContext, free_port

NS = "default"
MODEL = "qwen-7b"
TARGET_REQUESTS_PER_APP = 12
WRITES = ("POST", "PUT", "PATCH", "DELETE")
WORKLOAD = {
    "lws": ("leaderworkerset.x-k8s.io/v1", "leaderworkersets"),
    "deployment": ("apps/v1", "deployments"),
}
PLURALS = {"Service": "services", "PersistentVolumeClaim": "persistentvolumeclaims"}
Obj = dict[str, Any]


@dataclass(frozen=True)
class Options:
    apps: int
    endpoints: int
    workers: int
    timeout: float
    resync: float
    driver: str
    baseline: bool
    lease_deadline: float


def options(argv: Sequence[str], quick: bool) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench kube_scale")
    parser.add_argument("--apps", type=int, default=100 if quick else 1000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--workers", type=int, default=16, help="reconciler queue workers")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds allowed to reach Running"
    )
    parser.add_argument("--resync", type=float, default=20.0, help="resync period, seconds")
    parser.add_argument("--driver", choices=sorted(WORKLOAD), default="lws")
    parser.add_argument(
        "--lease-deadline",
        type=float,
        default=10.0,
        help="the Lease's renew deadline, seconds (the setting's default: 10)",
    )
    parser.add_argument("--no-baseline", dest="baseline", action="store_false")
    args = parser.parse_args(list(argv))
    if args.apps < 1 or not 1 <= args.endpoints <= args.apps:
        parser.error("need 1 <= --endpoints <= --apps")
    return Options(
        args.apps,
        args.endpoints,
        args.workers,
        args.timeout,
        args.resync,
        args.driver,
        args.baseline,
        args.lease_deadline,
    )


# ---------------------------------------------------------------------- objects


def model_obj() -> Obj:
    claim = {
        "name": "models",
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    return {
        "apiVersion": "arks.ai/v1",
        "kind": "ArksModel",
        "metadata": {"name": MODEL, "namespace": NS},
        "spec": {"model": "Qwen/Qwen2.5-7B-Instruct", "storage": {"pvc": claim}},
    }


def endpoint_name(index: int) -> str:
    return f"model-{index}"


def endpoint_obj(index: int) -> Obj:
    return {
        "apiVersion": "arks.ai/v1",
        "kind": "ArksEndpoint",
        "metadata": {"name": endpoint_name(index), "namespace": NS},
        "spec": {"defaultWeight": 1},
    }


def app_obj(index: int, endpoints: int) -> Obj:
    return {
        "apiVersion": "arks.ai/v1",
        "kind": "ArksApplication",
        "metadata": {"name": f"app-{index:04d}", "namespace": NS},
        "spec": {
            "replicas": 1,
            "runtime": "sim",
            "model": {"name": MODEL},
            "servedModelName": endpoint_name(index % endpoints),
        },
    }


def cluster_config(pods: int) -> ClusterConfig:
    """The default node and images, but room for every pod and the simulator simulated."""
    base = default_config()
    node = base.nodes[0]
    node = NodeConfig(node.name, labels=node.labels, gpus=node.gpus, pods=pods + 50)
    sim = ImageRule("arks/engine-sim", simulate=True)
    others = tuple(r for r in base.images if r.image != sim.image)
    return ClusterConfig((node,), (sim, *others), backoff_scale=0.01)


def _items(api: FakeKubeApi, api_version: str, plural: str) -> list[Obj]:
    group, _, _ = api_version.rpartition("/")
    return api.store.items(api.registry.resource(group, plural), NS)


def _pod_ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _kind_of(path: str) -> str:
    """`/apis/g/v/namespaces/ns/plural/name/status` → `plural/status`; lists → `plural`."""
    parts = [p for p in path.split("/") if p]
    parts = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if parts[:1] == ["namespaces"] and len(parts) > 2:
        parts = parts[2:]
    if len(parts) >= 3:
        return f"{parts[0]}/{parts[2]}"
    return parts[0] if parts else path


def breakdown(requests: Sequence[tuple[str, str]]) -> dict[str, int]:
    counted = collections.Counter(f"{method} {_kind_of(path)}" for method, path in requests)
    return dict(counted.most_common())


def _steady_writes(requests: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    return [
        (m, p) for m, p in requests if m in WRITES and "/events" not in p and "/leases/" not in p
    ]


# ---------------------------------------------------------------------- the rig


@contextlib.asynccontextmanager
async def _nats(workdir: Path) -> AsyncIterator[NatsServer]:
    nats = NatsServer(workdir / "nats", log_file=workdir / "nats.log")
    await asyncio.to_thread(nats.start)
    try:
        yield nats
    finally:
        await asyncio.to_thread(nats.stop)


@contextlib.asynccontextmanager
async def _cluster(workdir: Path, pods: int) -> AsyncIterator[tuple[FakeKubeApi, str]]:
    async with (
        serve(FakeKubeApi(crds=cluster_crds())) as (api, url),
        running_workloads(api, cluster_config(pods), workdir) as kubelet,
    ):
        await kubelet.registered()
        yield api, url


def reconciler_process(nats_url: str, api_url: str, opts: Options, workdir: Path) -> Any:
    """`arks-reconciler` as its own process (as it runs in a cluster: it never shares an
    event loop with the API server), with a known health port for /metrics."""
    deadline = opts.lease_deadline
    proc = ReconcilerProcess(nats_url, workdir / "local", workdir / "reconciler.log")
    proc.env.update(
        {
            "ARKS_PLATFORM": "kubernetes",
            "ARKS_KUBERNETES__API_URL": api_url,
            "ARKS_KUBERNETES__REQUEST_TIMEOUT": "60",
            "ARKS_KUBERNETES__DRIVER": opts.driver,
            "ARKS_KUBERNETES__LEASE__NAMESPACE": NS,
            "ARKS_KUBERNETES__LEASE__DURATION": str(deadline * 1.5),
            "ARKS_KUBERNETES__LEASE__RENEW_DEADLINE": str(deadline),
            "ARKS_KUBERNETES__LEASE__RETRY_PERIOD": "2",
            "ARKS_HEALTH__HOST": "127.0.0.1",
            "ARKS_HEALTH__PORT": str(free_port()),
            "ARKS_SHUTDOWN__DRAIN_TIMEOUT": "8",
            "ARKS_TELEMETRY__LOG_LEVEL": "WARNING",
            "ARKS_QUEUE__WORKERS": str(opts.workers),
            "ARKS_QUEUE__RESYNC_PERIOD": str(opts.resync),
            "ARKS_QUEUE__RETRY_INITIAL": "0.1",
            "ARKS_QUEUE__RETRY_MAX": "2",
            "ARKS_SCRAPE__INTERVAL": "1",
        }
    )
    return proc


def health_url(proc: Any) -> str:
    return f"http://127.0.0.1:{proc.env['ARKS_HEALTH__PORT']}"


async def _until(probe: Any, *, deadline: float, what: str, every: float = 0.5) -> Any:
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(every)


async def _route_counts(kv: Any, endpoints: int) -> dict[str, int]:
    counts = {}
    for index in range(endpoints):
        name = endpoint_name(index)
        try:
            entry = await kv.get(f"{NS}.{name}")
        except Exception:  # not published yet
            counts[name] = 0
            continue
        table = events.RouteTable.from_bytes(entry.value or b"")
        counts[name] = len({b.url for b in table.backends})
    return counts


async def _kv_last_seq(bus: messaging.Bus) -> int:
    info = await bus.js.stream_info(f"KV_{subjects.ROUTES_BUCKET}")
    return int(info.state.last_seq)


async def _metrics(url: str) -> dict[str, float]:
    """`arks_reconciler_kube_*` samples of the reconciler's /metrics."""
    out: dict[str, float] = {}
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as answer:
        for line in (await answer.text()).splitlines():
            if line.startswith("arks_reconciler_kube_") and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                if "_created" not in name:
                    out[name] = float(value)
    return out


async def measure_reconciler(ctx: BenchContext, opts: Options) -> tuple[dict[str, Any], list[Obj]]:
    """The reconciler's run; its figures, and the workload objects it wrote (for the
    baseline)."""
    result: dict[str, Any] = {}
    async with (
        _nats(ctx.workdir) as nats,
        _cluster(ctx.workdir / "cluster", opts.apps) as (api, url),
    ):
        reconciler = reconciler_process(nats.url, url, opts, ctx.workdir)
        reconciler.start()
        bus = await messaging.Bus.connect(NatsSettings(url=nats.url), name="bench-kube-scale")
        try:
            deadline = time.monotonic() + 60

            async def leading() -> bool:
                lease = api.get("coordination.k8s.io/v1", "leases", NS, "arks-reconciler")
                return bool(lease and (lease.get("spec") or {}).get("holderIdentity"))

            await _until(leading, deadline=deadline, what="the reconciler to lead")
            await asyncio.sleep(1.0)  # its informers listed and watching
            startup = len(api.requests)
            result["startup_requests"] = startup

            started = time.monotonic()
            api.create(model_obj())
            for index in range(opts.endpoints):
                api.create(endpoint_obj(index))
            for index in range(opts.apps):
                api.create(app_obj(index, opts.endpoints))
                if index % 50 == 49:
                    await asyncio.sleep(0)
            result["create_s"] = round(time.monotonic() - started, 2)
            deadline = started + opts.timeout
            kv = await _until(lambda: _kv_bucket(bus), deadline=deadline, what="the routes bucket")
            expected = {
                endpoint_name(i): len(range(i, opts.apps, opts.endpoints))
                for i in range(opts.endpoints)
            }
            marks: dict[str, float] = {}
            progress: dict[str, int] = {}
            last_note = [started]

            async def done() -> bool:
                # The service exits (75) when it loses the Lease.
                code = reconciler.proc.poll() if reconciler.proc is not None else -1
                if code is not None:
                    raise RuntimeError(
                        f"the reconciler exited with {code} (75: it lost its Lease; see "
                        f"{reconciler.log})"
                    )
                apps = _items(api, "arks.ai/v1", "arksapplications")
                running = sum(
                    1
                    for a in apps
                    if (a.get("status") or {}).get("phase") == "Running"
                    and (a.get("status") or {}).get("readyReplicas") == 1
                )
                progress["running"] = running
                if running == opts.apps and "running" not in marks:
                    marks["running"] = time.monotonic() - started
                routed = await _route_counts(kv, opts.endpoints)
                progress["routed"] = sum(routed.values())
                if routed == expected and "routed" not in marks:
                    marks["routed"] = time.monotonic() - started
                if time.monotonic() - last_note[0] > 15:
                    last_note[0] = time.monotonic()
                    pods = _items(api, "v1", "pods")
                    ctx.note(
                        f"{time.monotonic() - started:.0f} s: {running}/{opts.apps} Running, "
                        f"{sum(map(_pod_ready, pods))}/{len(pods)} pods Ready, "
                        f"{sum(routed.values())}/{opts.apps} routed, "
                        f"{len(api.requests) - startup} requests"
                    )
                return "running" in marks and "routed" in marks

            try:
                await _until(done, deadline=deadline, what="every application Running and routed")
            except (TimeoutError, RuntimeError) as exc:
                # Reported, not raised: how far it got is the figure.
                work = api.requests[startup:]
                result["failure"] = str(exc)
                result["failed_after_s"] = round(time.monotonic() - started, 1)
                result["progress"] = dict(progress)
                result["requests"] = len(work)
                result["requests_by_kind"] = breakdown(work)
                return result, []
            work = api.requests[startup:]
            result["running_s"] = round(marks["running"], 2)
            result["routed_s"] = round(marks["routed"], 2)
            result["requests"] = len(work)
            result["requests_per_app"] = round(len(work) / opts.apps, 2)
            result["requests_by_kind"] = breakdown(work)
            result["metrics_at_done"] = await _metrics(health_url(reconciler))

            # Writes still queued when the last application turned Running (late status
            # updates) are let through first: settled = no write for half a resync period.
            settle_from, quiet_since, seen = len(api.requests), time.monotonic(), 0
            while time.monotonic() - quiet_since < opts.resync / 2:
                if time.monotonic() > deadline:
                    raise TimeoutError("the reconciler kept writing after Running")
                await asyncio.sleep(0.5)
                now_seen = len(_steady_writes(api.requests[settle_from:]))
                if now_seen != seen:
                    seen, quiet_since = now_seen, time.monotonic()
            result["settle_writes"] = seen
            settled = api.requests[startup:]
            result["requests_until_settled"] = len(settled)
            result["requests_per_app_until_settled"] = round(len(settled) / opts.apps, 2)
            result["settled_s"] = round(time.monotonic() - started, 2)

            # One resync period (and a margin): a steady cluster is not written again.
            before = len(api.requests)
            seq = await _kv_last_seq(bus)
            await asyncio.sleep(opts.resync * 1.5 + 2)
            during = api.requests[before:]
            result["resync_wait_s"] = opts.resync * 1.5 + 2
            result["resync_requests_by_kind"] = breakdown(during)
            result["resync_writes"] = len(_steady_writes(during))
            result["resync_route_kv_writes"] = await _kv_last_seq(bus) - seq
            metrics = await _metrics(health_url(reconciler))
            applies = "arks_reconciler_kube_applies_total"
            result["resync_applies_skipped"] = metrics.get(
                f'{applies}{{result="skipped"}}', 0
            ) - result["metrics_at_done"].get(f'{applies}{{result="skipped"}}', 0)
            result["metrics_after_resync"] = metrics
            objects = [
                *_items(api, "v1", "persistentvolumeclaims"),
                *_items(api, *WORKLOAD[opts.driver]),
                *(
                    s
                    for s in _items(api, "v1", "services")
                    if (s["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by")
                    == "arks"
                ),
            ]
            return result, [copy.deepcopy(o) for o in objects]
        finally:
            await bus.close()
            process = reconciler.proc
            if process is not None and process.poll() is not None:
                result["reconciler_exit"] = process.returncode  # reported above
            await asyncio.to_thread(reconciler.terminate)


async def _kv_bucket(bus: messaging.Bus) -> Any:
    try:
        return await bus.kv(subjects.ROUTES_BUCKET)
    except Exception:  # not created yet
        return None


def _bare(obj: Obj) -> Obj:
    """An object as a client would create it: no server fields, no owner."""
    meta = obj["metadata"]
    keep = {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta}
    body = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
    return {**body, "metadata": keep}


async def measure_baseline(ctx: BenchContext, opts: Options, objects: list[Obj]) -> dict[str, Any]:
    """The same workload objects POSTed by clients to a fresh cluster; until pods Ready."""
    bodies = [_bare(o) for o in objects]
    claims = [b for b in bodies if b["kind"] == "PersistentVolumeClaim"]
    async with _cluster(ctx.workdir / "baseline", opts.apps) as (api, url):
        started = time.monotonic()
        queue = collections.deque(claims)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

            async def client() -> None:
                while queue:
                    body = queue.popleft()
                    group_version = body["apiVersion"]
                    plural = PLURALS.get(body["kind"]) or WORKLOAD[opts.driver][1]
                    root = "api" if "/" not in group_version else "apis"
                    target = f"{url}/{root}/{group_version}/namespaces/{NS}/{plural}"
                    async with http.post(target, json=body) as answer:
                        if answer.status != 201:
                            raise RuntimeError(f"{answer.status}: {await answer.text()}")

            await client()  # the claims first, as the reconciler wrote them first
            queue.extend(b for b in bodies if b not in claims)
            await asyncio.gather(*(client() for _ in range(opts.workers)))
        written = time.monotonic() - started

        async def ready() -> bool:
            pods = _items(api, "v1", "pods")
            return sum(map(_pod_ready, pods)) >= opts.apps

        await _until(ready, deadline=started + opts.timeout, what="every baseline pod Ready")
        return {
            "objects": len(bodies),
            "write_s": round(written, 2),
            "pods_ready_s": round(time.monotonic() - started, 2),
        }


async def run(ctx: BenchContext, argv: Sequence[str] = ()) -> dict[str, Any]:
    opts = options(argv, ctx.quick)
    logging.getLogger("arks_devcluster").setLevel(logging.WARNING)
    ctx.note(
        f"{opts.apps} applications, {opts.endpoints} endpoints, driver {opts.driver}, "
        f"{opts.workers} workers, resync {opts.resync} s"
    )
    result: dict[str, Any] = {"options": opts.__dict__}
    reconciler, objects = await measure_reconciler(ctx, opts)
    result["reconciler"] = reconciler
    if "failure" in reconciler:
        progress = reconciler["progress"]
        result["headline"] = (
            f"{opts.apps} apps: {reconciler['failure']} after {reconciler['failed_after_s']} s, "
            f"{progress.get('running', 0)} Running, {progress.get('routed', 0)} routed, "
            f"{reconciler['requests']} API requests"
        )
        result["verdict"] = "FAIL"
        result["targets_missed"] = True
        ctx.note(result["headline"])
        kinds = ", ".join(f"{k} {v}" for k, v in reconciler["requests_by_kind"].items())
        print(f"requests by kind: {kinds}")
        return result
    ctx.note(
        f"reconciler: all Running in {reconciler['running_s']} s, routed in "
        f"{reconciler['routed_s']} s; {reconciler['requests']} API requests "
        f"({reconciler['requests_per_app']}/app); resync: {reconciler['resync_writes']} writes, "
        f"{reconciler['resync_route_kv_writes']} route KV writes"
    )
    ratio = None
    if opts.baseline:
        baseline = await measure_baseline(ctx, opts, objects)
        result["baseline"] = baseline
        slowest = max(reconciler["running_s"], reconciler["routed_s"])
        ratio = round(slowest / baseline["pods_ready_s"], 2)
        result["ratio_vs_baseline"] = ratio
        ctx.note(
            f"baseline: {baseline['objects']} workload objects POSTed in {baseline['write_s']} "
            f"s, every pod Ready in {baseline['pods_ready_s']} s"
        )
    per_app = reconciler["requests_per_app_until_settled"]
    writes = reconciler["resync_writes"] + reconciler["resync_route_kv_writes"]
    result["headline"] = (
        f"{opts.apps} apps Running and routed in "
        f"{max(reconciler['running_s'], reconciler['routed_s'])} s"
        + (f" ({ratio}x the cluster's own time for the objects)" if ratio else "")
        + f"; {per_app} API requests/app; resync writes {writes}"
    )
    missed = per_app > TARGET_REQUESTS_PER_APP or writes > 0
    result["verdict"] = "FAIL" if missed else "pass"
    result["targets_missed"] = missed  # python -m bench exits nonzero
    print(_table(result))
    return result


def _table(result: dict[str, Any]) -> str:
    r = result["reconciler"]
    rows = [
        ("applications Running (s)", r["running_s"]),
        ("endpoints routed (s)", r["routed_s"]),
        ("API requests / application, until Running", r["requests_per_app"]),
        (
            "API requests / application, until quiet",
            f"{r['requests_per_app_until_settled']} (target <= {TARGET_REQUESTS_PER_APP})",
        ),
        ("writes after Running, until quiet", r["settle_writes"]),
        ("resync writes (Leases, Events aside)", f"{r['resync_writes']} (target 0)"),
        ("resync route KV writes", f"{r['resync_route_kv_writes']} (target 0)"),
    ]
    if "baseline" in result:
        b = result["baseline"]
        rows += [
            ("baseline: objects POSTed (s)", b["write_s"]),
            ("baseline: pods Ready (s)", b["pods_ready_s"]),
            ("reconciler / baseline", result["ratio_vs_baseline"]),
        ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    kinds = ", ".join(f"{k} {v}" for k, v in r["requests_by_kind"].items())
    lines.append(f"requests by kind until Running: {kinds}")
    return "\n".join(lines)
