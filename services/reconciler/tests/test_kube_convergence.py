"""The Kubernetes platform converges, whatever happens: every creation order of model,
application and endpoint gives the same objects; a reconciler killed after its n-th API
request and started again leaves one object of each kind, with the uids it had; of two
reconcilers only the leader writes, and the other takes over when it goes.

The dev cluster's API server only (no kubelet): these tests are about the objects the
reconciler writes, not about pods."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from arks_common.kubeapi import KubeApi
from arks_devcluster import FakeKubeApi, serve
from arks_devcluster.cluster import cluster_crds
from arks_reconciler.kube.testing import application, endpoint, model, start_reconciler
from arks_reconciler.testing import ReconcilerProcess, eventually

NS = "default"
OWNED = (
    ("leaderworkerset.x-k8s.io", "leaderworkersets"),
    ("", "services"),
    ("", "persistentvolumeclaims"),
)
CREATE = {"model": model, "application": lambda: application(replicas=1), "endpoint": endpoint}


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[FakeKubeApi, str]]:
    async with serve(FakeKubeApi(crds=cluster_crds())) as (api, url):
        yield api, url


def objects(api: FakeKubeApi) -> dict[tuple[str, str], dict[str, Any]]:
    """The owned objects by (plural, name)."""
    out = {}
    for group, plural in OWNED:
        for obj in api.store.items(api.registry.resource(group, plural), NS):
            out[(plural, obj["metadata"]["name"])] = obj
    return out


def arks_status(api: FakeKubeApi, plural: str, name: str) -> dict[str, Any]:
    return (api.get("arks.ai/v1", plural, NS, name) or {}).get("status") or {}


async def converged(api: FakeKubeApi) -> bool:
    found = objects(api)
    app = arks_status(api, "arksapplications", "app-qwen")
    conds = {c["type"]: c["status"] for c in app.get("conditions") or []}
    return (
        set(found)
        == {
            ("leaderworkersets", "app-qwen"),
            ("services", "arks-application-app-qwen"),
            ("persistentvolumeclaims", "models"),
        }
        and arks_status(api, "arksmodels", "qwen-7b").get("phase") == "Ready"
        and conds.get("Loaded") == "True"
        and bool(arks_status(api, "arksendpoints", "qwen-7b").get("conditions"))
    )


def shape(api: FakeKubeApi) -> dict[tuple[str, str], Any]:
    """What must be the same whatever the order: each owned object's spec."""
    return {key: obj.get("spec") for key, obj in objects(api).items()}


async def test_every_creation_order_converges_to_the_same_objects(
    nats_server: Any, tmp_path: Path
) -> None:
    shapes = []
    for index, order in enumerate(itertools.permutations(CREATE)):
        async with serve(FakeKubeApi(crds=cluster_crds())) as (api, url):
            running = await start_reconciler(nats_server.url, tmp_path / f"d{index}", url)
            try:
                for kind in order:
                    api.create(CREATE[kind]())
                    await asyncio.sleep(0.2)  # let the reconciler act between creations
                await eventually(lambda: converged(api), within=30, what=f"order {order}")
                shapes.append(shape(api))
            finally:
                await running.stop()
    assert len(shapes) == 6
    assert all(s == shapes[0] for s in shapes[1:])


class KillAt(list[tuple[str, str]]):
    """The API server's request log, which SIGKILLs the reconciler's process when its
    n-th write arrives (before the server answers it)."""

    def __init__(self, n: int, proc: ReconcilerProcess) -> None:
        super().__init__()
        self.n, self.proc, self.writes = n, proc, 0
        self.killed = asyncio.Event()

    def append(self, item: tuple[str, str]) -> None:
        super().append(item)
        if item[0] != "GET" and not self.killed.is_set():
            self.writes += 1
            if self.writes >= self.n:
                self.proc.kill()
                self.killed.set()


def reconciler_process(nats_url: str, tmp_path: Path, url: str) -> ReconcilerProcess:
    proc = ReconcilerProcess(nats_url, tmp_path / "first", tmp_path / "first.log")
    proc.env.update(
        {
            "ARKS_PLATFORM": "kubernetes",
            "ARKS_KUBERNETES__API_URL": url,
            "ARKS_KUBERNETES__LEASE__NAMESPACE": NS,
            "ARKS_KUBERNETES__LEASE__DURATION": "2",
            "ARKS_KUBERNETES__LEASE__RENEW_DEADLINE": "1.5",
            "ARKS_KUBERNETES__LEASE__RETRY_PERIOD": "0.3",
            "ARKS_HEALTH__PORT": "0",
            "ARKS_QUEUE__RETRY_INITIAL": "0.1",
        }
    )
    return proc


@pytest.mark.parametrize(
    # every write of the first creations (Lease, finalizers, PVC, statuses, Services,
    # workloads), then a sample of the later ones (statuses, renewals): 20 values
    "n",
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 18, 20, 23, 26, 30],
)
async def test_a_reconciler_killed_after_its_nth_request_leaves_one_object_of_each_kind(
    n: int, cluster, nats_server: Any, tmp_path: Path
) -> None:
    api, url = cluster
    for build in CREATE.values():
        api.create(build())
    proc = reconciler_process(nats_server.url, tmp_path, url)
    log = KillAt(n, proc)
    api.requests = log
    proc.start()
    try:
        # (writes never stop: Lease renewals are writes too, so every n is reached)
        await asyncio.wait_for(log.killed.wait(), 40)
    finally:
        proc.kill()
    await asyncio.sleep(0.2)  # the server finishes the request in flight
    # The dead holder's Lease would expire in 2 s; dropping it saves the wait (leader
    # election has tests of its own).
    api.store.delete(api.registry.resource("coordination.k8s.io", "leases"), NS, "arks-reconciler")
    before = {key: obj["metadata"]["uid"] for key, obj in objects(api).items()}

    second = await start_reconciler(nats_server.url, tmp_path / "second", url)
    try:
        await eventually(lambda: converged(api), within=40, what="convergence after the kill")
        after = {key: obj["metadata"]["uid"] for key, obj in objects(api).items()}
        assert len(after) == 3
        for key, uid in before.items():
            assert after[key] == uid, f"{key} was created again"
    finally:
        await second.stop()


async def test_only_the_leader_writes_and_the_other_takes_over(
    cluster, nats_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, url = cluster
    clients: list[KubeApi] = []
    writes: dict[int, int] = {}
    real_init, real_request = KubeApi.__init__, KubeApi.request

    def registering(self: KubeApi, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        clients.append(self)

    async def counting(self: KubeApi, method: str, path: str, **kwargs: Any) -> Any:
        if method != "GET" and "/leases/" not in path and "/events" not in path:
            writes[id(self)] = writes.get(id(self), 0) + 1
        return await real_request(self, method, path, **kwargs)

    monkeypatch.setattr(KubeApi, "__init__", registering)
    monkeypatch.setattr(KubeApi, "request", counting)
    first = await start_reconciler(nats_server.url, tmp_path / "a", url, identity="a")
    await eventually(lambda: asyncio.sleep(0, _holder(api) == "a"), within=20, what="a leads")
    second = await start_reconciler(nats_server.url, tmp_path / "b", url, identity="b")
    try:
        await eventually(lambda: asyncio.sleep(0, len(clients) == 2), what="two clients")
        a, b = clients
        for build in CREATE.values():
            api.create(build())
        await eventually(lambda: converged(api), within=30, what="convergence")
        assert _holder(api) == "a"
        assert writes.get(id(a), 0) > 0
        assert writes.get(id(b), 0) == 0, "the standby writes nothing"
        # Both are Ready (a rollout or a drain must not wait for the standby to lead).
        async with httpx.AsyncClient(timeout=10) as http:
            for running in (first, second):
                ready = await http.get(f"{running.health_url}/readyz")
                assert ready.status_code == 200, ready.text

        await first.stop()  # releases the Lease: the standby takes over at once
        await eventually(lambda: asyncio.sleep(0, _holder(api) == "b"), within=20, what="b leads")
        app = api.get("arks.ai/v1", "arksapplications", NS, "app-qwen")
        app["spec"]["replicas"] = 2
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.put(
                f"{url}/apis/arks.ai/v1/namespaces/{NS}/arksapplications/app-qwen", json=app
            )
            assert answer.status_code == 200, answer.text

        async def scaled() -> bool:
            lws = objects(api).get(("leaderworkersets", "app-qwen")) or {}
            return bool(lws.get("spec", {}).get("replicas") == 2)

        await eventually(scaled, within=30, what="the new leader scales the LeaderWorkerSet")
        assert writes.get(id(b), 0) > 0
    finally:
        await first.stop()
        await second.stop()


def _holder(api: FakeKubeApi) -> str | None:
    lease = api.get("coordination.k8s.io/v1", "leases", NS, "arks-reconciler") or {}
    return (lease.get("spec") or {}).get("holderIdentity") or None
