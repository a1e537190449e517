"""The reconciler on the Kubernetes platform, end to end on the dev cluster: the real
service (`ARKS_PLATFORM=kubernetes`) against the dev cluster's API server, controllers
and kubelet (engine-sim pods on their own 127.x addresses), with a real NATS for the
route, token and quota tables."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from arks_common import messaging
from arks_devcluster import FakeKubeApi, serve
from arks_devcluster.api import arks_crds
from arks_devcluster.cluster import cluster_crds, running_workloads
from arks_devcluster.kubelet import default_config
from arks_reconciler.kube.testing import (
    NS,
    application,
    endpoint,
    model,
    route_urls,
    start_reconciler,
)
from arks_reconciler.testing import eventually


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[FakeKubeApi, str]]:
    config = default_config()
    config = type(config)(config.nodes, config.images, backoff_scale=0.01)
    async with (
        serve(FakeKubeApi(crds=cluster_crds())) as (api, url),
        running_workloads(api, config, tmp_path / "cluster"),
    ):
        yield api, url


def status(api: FakeKubeApi, plural: str, name: str) -> dict[str, Any]:
    obj = api.get("arks.ai/v1", plural, NS, name) or {}
    return obj.get("status") or {}


def owned(api: FakeKubeApi, api_version: str, plural: str) -> list[dict[str, Any]]:
    group, _, _version = api_version.rpartition("/")
    return list(api.store.items(api.registry.resource(group, plural), NS))


async def test_an_application_runs_as_a_leader_worker_set_serves_scales_and_goes(
    cluster, nats_server: Any, data_dir: Path, bus: messaging.Bus
) -> None:
    api, url = cluster
    reconciler = await start_reconciler(nats_server.url, data_dir, url)
    try:
        api.create(model())
        api.create(application())
        api.create(endpoint())

        async def running() -> dict[str, Any] | None:
            s = status(api, "arksapplications", "app-qwen")
            return s if s.get("phase") == "Running" and s.get("readyReplicas") == 2 else None

        await eventually(running, within=90, what="the application Running with 2 replicas")
        assert status(api, "arksmodels", "qwen-7b")["phase"] == "Ready"
        urls = await eventually(lambda: route_urls(bus, 2), within=30, what="2 routed backends")
        async with httpx.AsyncClient(timeout=10) as http:
            for base in urls:
                models = (await http.get(f"{base}/v1/models")).json()
                assert [m["id"] for m in models["data"]] == ["qwen-7b"]

        lws = api.get("leaderworkerset.x-k8s.io/v1", "leaderworkersets", NS, "app-qwen")
        assert lws is not None
        app = api.get("arks.ai/v1", "arksapplications", NS, "app-qwen")
        (owner,) = lws["metadata"]["ownerReferences"]
        assert owner["uid"] == app["metadata"]["uid"]
        assert owner["controller"] is True
        service = api.get("v1", "services", NS, "arks-application-app-qwen")
        assert service["spec"]["selector"]["arks.ai/work-load-role"] == "leader"
        managed = [f["manager"] for f in lws["metadata"].get("managedFields") or []]
        assert "arks-reconciler" in managed
        assert api.get("v1", "persistentvolumeclaims", NS, "models") is not None

        # Kubernetes Events tell the story of the phases.
        def reasons() -> set[str]:
            return {
                str(e.get("reason"))
                for e in owned(api, "v1", "events")
                if e["involvedObject"].get("name") == "app-qwen"
            }

        await eventually(
            lambda: asyncio.sleep(0, "Running" in reasons()), what="an Event for Running"
        )

        # A steady cluster is not written again on resync (but for the Lease's renewals).
        writes = len([r for r in api.requests if r[0] in ("PATCH", "PUT", "POST")])
        await asyncio.sleep(6)  # longer than the resync period of the test settings
        later = [r for r in api.requests[:] if r[0] in ("PATCH", "PUT", "POST")]
        assert [r for r in later[writes:] if "/events" not in r[1] and "/leases/" not in r[1]] == []

        # An owned object deleted by hand is put back (what we applied before is no
        # reason to think it is still there).
        before = api.get("v1", "services", NS, "arks-application-app-qwen")
        async with httpx.AsyncClient(timeout=10) as http:
            await http.delete(f"{url}/api/v1/namespaces/{NS}/services/arks-application-app-qwen")

        def put_back() -> dict[str, Any] | None:
            again = api.get("v1", "services", NS, "arks-application-app-qwen")
            uid = before["metadata"]["uid"]
            return again if again and again["metadata"]["uid"] != uid else None

        await eventually(lambda: asyncio.sleep(0, put_back()), within=30, what="the Service back")

        # Scale through the spec: one replica, one backend.
        app = api.get("arks.ai/v1", "arksapplications", NS, "app-qwen")
        app["spec"]["replicas"] = 1
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.put(
                f"{url}/apis/arks.ai/v1/namespaces/{NS}/arksapplications/app-qwen", json=app
            )
            assert answer.status_code == 200, answer.text
        await eventually(lambda: route_urls(bus, 1), within=60, what="1 routed backend")

        # Deleting the application deletes what it owned.
        async with httpx.AsyncClient(timeout=10) as http:
            await http.delete(f"{url}/apis/arks.ai/v1/namespaces/{NS}/arksapplications/app-qwen")

        async def gone() -> bool:
            return (
                api.get("arks.ai/v1", "arksapplications", NS, "app-qwen") is None
                and api.get("leaderworkerset.x-k8s.io/v1", "leaderworkersets", NS, "app-qwen")
                is None
                and api.get("v1", "services", NS, "arks-application-app-qwen") is None
            )

        await eventually(gone, within=60, what="the application and its objects gone")
    finally:
        await reconciler.stop()


@pytest.mark.parametrize("driver", ["deployment", "rbg"])
async def test_other_drivers_serve_too(
    driver: str, cluster, nats_server: Any, data_dir: Path, bus: messaging.Bus
) -> None:
    api, url = cluster
    reconciler = await start_reconciler(nats_server.url, data_dir, url, driver=driver)
    try:
        api.create(model())
        api.create(application(replicas=1))
        api.create(endpoint())
        await eventually(lambda: route_urls(bus, 1), within=90, what=f"a {driver} backend")
        app = api.get("arks.ai/v1", "arksapplications", NS, "app-qwen")
        assert app["status"]["phase"] == "Running"
        kind = {
            "deployment": ("apps/v1", "deployments"),
            "rbg": ("workloads.x-k8s.io/v1alpha1", "rolebasedgroups"),
        }
        assert api.get(*kind[driver], NS, "app-qwen") is not None
    finally:
        await reconciler.stop()


async def test_upstream_role_based_group_set_is_replaced_then_deleted(
    cluster, nats_server: Any, data_dir: Path, bus: messaging.Bus
) -> None:
    """Upgrading from upstream Arks: its RoleBasedGroupSet of the application serves
    until the workload we render is Ready, then goes, with an `Adopted` Event."""
    api, url = cluster
    api.create(model())
    # Ours cannot start at first (an image no node can pull).
    app = api.create(application(replicas=1, runtimeImage="registry.invalid/none:1"))
    upstream = {
        "apiVersion": "workloads.x-k8s.io/v1alpha1",
        "kind": "RoleBasedGroupSet",
        "metadata": {
            "name": "app-qwen",
            "namespace": NS,
            "labels": {"arks.ai/application": "app-qwen"},
            "ownerReferences": [
                {
                    "apiVersion": "arks.ai/v1",
                    "kind": "ArksApplication",
                    "name": "app-qwen",
                    "uid": app["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": 1,
            "template": {
                "roles": [
                    {
                        "name": "inference",
                        "replicas": 1,
                        "template": {"spec": {"containers": [{"name": "main", "image": "x"}]}},
                    }
                ]
            },
        },
    }
    api.create(upstream)
    rbgs = ("workloads.x-k8s.io/v1alpha1", "rolebasedgroupsets", NS, "app-qwen")
    reconciler = await start_reconciler(nats_server.url, data_dir, url)
    try:

        async def pulling() -> bool:
            reason = status(api, "arksapplications", "app-qwen").get("conditions") or []
            return any("ImagePull" in (c.get("message") or "") for c in reason)

        await eventually(pulling, within=60, what="our replica failing to pull")
        await asyncio.sleep(1)  # reconciles of the failing replica go by
        assert api.get(*rbgs) is not None, "upstream's workload serves while ours cannot"

        current = api.get("arks.ai/v1", "arksapplications", NS, "app-qwen")
        del current["spec"]["runtimeImage"]
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.put(
                f"{url}/apis/arks.ai/v1/namespaces/{NS}/arksapplications/app-qwen", json=current
            )
            assert answer.status_code == 200, answer.text

        async def replaced() -> bool:
            return api.get(*rbgs) is None

        await eventually(replaced, within=90, what="upstream's RoleBasedGroupSet deleted")
        # Deleted only once ours served: a Ready replica of the rendered workload.
        ready = [
            p
            for p in owned(api, "v1", "pods")
            if (p["metadata"].get("labels") or {}).get("arks.ai/template-hash")
            and any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (p.get("status") or {}).get("conditions") or []
            )
        ]
        assert ready, "our replica is Ready"
        assert api.get("leaderworkerset.x-k8s.io/v1", "leaderworkersets", NS, "app-qwen")

        def adopted() -> list[dict[str, Any]]:
            return [e for e in owned(api, "v1", "events") if e.get("reason") == "Adopted"]

        (event,) = await eventually(lambda: asyncio.sleep(0, adopted()), what="an Adopted Event")
        assert "RoleBasedGroupSet app-qwen" in event["message"]
        assert event["involvedObject"]["name"] == "app-qwen"
    finally:
        await reconciler.stop()


async def test_a_driver_whose_crd_is_missing_is_a_precheck_failure(
    nats_server: Any, data_dir: Path
) -> None:
    async with serve(FakeKubeApi(crds=arks_crds())) as (api, url):
        reconciler = await start_reconciler(nats_server.url, data_dir, url)
        try:
            api.create(model())
            api.create(application())

            async def failed() -> dict[str, Any] | None:
                s = status(api, "arksapplications", "app-qwen")
                conds = {c["type"]: c for c in s.get("conditions") or []}
                pre = conds.get("Precheck") or {}
                return pre if pre.get("reason") == "DriverNotInstalled" else None

            pre = await eventually(failed, within=30, what="Precheck False DriverNotInstalled")
            assert pre["status"] == "False"
            assert "leaderworkersets" in pre["message"]
            assert status(api, "arksapplications", "app-qwen")["phase"] == "Failed"
        finally:
            await reconciler.stop()


async def test_a_model_without_storage_fails_with_a_reason(
    nats_server: Any, data_dir: Path
) -> None:
    async with serve() as (api, url):
        reconciler = await start_reconciler(nats_server.url, data_dir, url)
        try:
            obj = model()
            del obj["spec"]["storage"]
            api.create(obj)

            async def failed() -> dict[str, Any] | None:
                s = status(api, "arksmodels", "qwen-7b")
                return s if s.get("phase") == "Failed" else None

            s = await eventually(failed, within=30, what="the model Failed")
            assert "storage.pvc is required" in json.dumps(s["conditions"])
        finally:
            await reconciler.stop()


async def test_an_endpoint_with_a_gateway_ref_gets_an_http_route_to_the_router(
    nats_server: Any, data_dir: Path
) -> None:
    async with serve(FakeKubeApi(crds=cluster_crds())) as (api, url):
        reconciler = await start_reconciler(nats_server.url, data_dir, url)
        try:
            obj = endpoint()
            obj["spec"]["gatewayRef"] = {"name": "arks-eg", "namespace": "arks-system"}
            obj["spec"]["matchConfigs"] = [{"path": {"type": "PathPrefix", "value": "/v1"}}]
            api.create(obj)

            async def route() -> dict[str, Any] | None:
                return api.get("gateway.networking.k8s.io/v1", "httproutes", NS, "qwen-7b")

            found = await eventually(route, within=30, what="the HTTPRoute")
            (rule,) = found["spec"]["rules"]
            assert rule["backendRefs"] == [
                {
                    "group": "",
                    "kind": "Service",
                    "name": "arks-router",
                    "namespace": "arks-system",
                    "port": 80,
                    "weight": 1,  # (the CRD's default)
                }
            ]
            (match,) = rule["matches"]
            headers = {h["name"]: h["value"] for h in match["headers"]}
            assert headers == {"model": "qwen-7b", "namespace": NS}
            assert match["path"] == {"type": "PathPrefix", "value": "/v1"}
            owner = found["metadata"]["ownerReferences"][0]
            assert owner["kind"] == "ArksEndpoint"
            grants = owned(api, "gateway.networking.k8s.io/v1beta1", "referencegrants")
            assert grants == []  # (namespaced to arks-system: look there)

            async def grant_made() -> dict[str, Any] | None:
                return api.get(
                    "gateway.networking.k8s.io/v1beta1",
                    "referencegrants",
                    "arks-system",
                    f"arks-endpoint-{NS}-qwen-7b",
                )

            grant = await eventually(grant_made, within=30, what="the ReferenceGrant")
            assert grant["spec"]["to"] == [{"group": "", "kind": "Service", "name": "arks-router"}]

            async def routed() -> dict[str, Any] | None:
                conds = status(api, "arksendpoints", "qwen-7b").get("conditions") or []
                return next(
                    (c for c in conds if c["type"] == "GatewayRouted" and c["status"] == "True"),
                    None,
                )

            await eventually(routed, within=30, what="GatewayRouted True")

            async with httpx.AsyncClient(timeout=10) as http:
                await http.delete(f"{url}/apis/arks.ai/v1/namespaces/{NS}/arksendpoints/qwen-7b")

            async def cleaned() -> bool:
                return (
                    await route() is None
                    and api.get(
                        "gateway.networking.k8s.io/v1beta1",
                        "referencegrants",
                        "arks-system",
                        f"arks-endpoint-{NS}-qwen-7b",
                    )
                    is None
                )

            await eventually(cleaned, within=30, what="the route and grant removed")
        finally:
            await reconciler.stop()
