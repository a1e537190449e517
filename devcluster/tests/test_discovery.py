"""Discovery and OpenAPI, as real kubectl 1.32 and kubernetes-asyncio's dynamic client
use them: every served kind is found by plural, singular, short name and category,
kubectl's get/apply/describe/delete round-trip, and /version answers."""

from __future__ import annotations

import httpx
from kubernetes_asyncio import client
from kubernetes_asyncio.dynamic import DynamicClient

QUOTA = """
apiVersion: arks.ai/v1
kind: ArksQuota
metadata: {name: team-a}
spec:
  quotas: [{type: total, value: 1000}]
"""
CONFIGMAP = """
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {mode: fast}
"""


async def test_kubectl_finds_every_kind_by_its_names(cluster):
    resources = await cluster.kubectl.check("api-resources", "--no-headers")
    rows = {line.split()[0]: line.split() for line in resources.out.splitlines()}
    assert rows["arksquotas"][1:] == ["aq", "arks.ai/v1", "true", "ArksQuota"]
    assert rows["deployments"][1:] == ["deploy", "apps/v1", "true", "Deployment"]
    assert rows["namespaces"][1:] == ["ns", "v1", "false", "Namespace"]
    await cluster.kubectl.check("apply", "-f", "-", stdin=QUOTA)
    for name in ("arksquotas", "arksquota", "aq", "arksquotas.arks.ai", "arks"):
        got = await cluster.kubectl.check("get", name, "-o", "name")
        assert got.out.split() == ["arksquota.arks.ai/team-a"], name


async def test_kubectl_get_apply_describe_delete(cluster):
    created = await cluster.kubectl.check("apply", "-f", "-", stdin=CONFIGMAP)
    assert created.out.strip() == "configmap/settings created"
    unchanged = await cluster.kubectl.check("apply", "-f", "-", stdin=CONFIGMAP)
    assert unchanged.out.strip() == "configmap/settings unchanged"
    changed = await cluster.kubectl.check(
        "apply", "-f", "-", stdin=CONFIGMAP.replace("fast", "slow")
    )
    assert changed.out.strip() == "configmap/settings configured"
    got = (await cluster.kubectl.check("get", "configmap", "settings", "-o", "json")).json()
    assert got["data"] == {"mode": "slow"}
    assert "kubectl.kubernetes.io/last-applied-configuration" in got["metadata"]["annotations"]
    described = await cluster.kubectl.check("describe", "configmap", "settings")
    assert "settings" in described.out
    assert "slow" in described.out
    deleted = await cluster.kubectl.check("delete", "configmap", "settings")
    assert deleted.out.strip() == 'configmap "settings" deleted'
    missing = await cluster.kubectl.run("get", "configmap", "settings")
    assert missing.code == 1
    assert 'configmaps "settings" not found' in missing.err


async def test_kubectl_version_and_unknown_paths(cluster):
    version = (await cluster.kubectl.check("version", "-o", "json")).json()
    assert version["serverVersion"]["minor"] == "32"
    async with httpx.AsyncClient(base_url=cluster.url) as http:
        nothing = await http.get("/nothing/here")
        assert nothing.status_code == 404
        assert nothing.json()["kind"] == "Status"
        aggregated = await http.get(
            "/apis",
            headers={
                "Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
            },
        )
        assert aggregated.headers["content-type"].startswith(
            "application/json;g=apidiscovery.k8s.io;v=v2"
        )
        names = [item["metadata"]["name"] for item in aggregated.json()["items"]]
        assert {"apps", "arks.ai"} <= set(names)
        assert "" not in names
        legacy = (await http.get("/apis")).json()
        assert legacy["kind"] == "APIGroupList"
        assert {"groupVersion": "apps/v1", "version": "v1"} in next(
            g["versions"] for g in legacy["groups"] if g["name"] == "apps"
        )


async def test_the_dynamic_client_discovers_and_uses_kinds(cluster):
    dynamic = await DynamicClient(cluster.client)
    quotas = await dynamic.resources.get(api_version="arks.ai/v1", kind="ArksQuota")
    assert quotas.namespaced
    assert quotas.name == "arksquotas"
    await quotas.create(
        body={
            "apiVersion": "arks.ai/v1",
            "kind": "ArksQuota",
            "metadata": {"name": "q"},
            "spec": {"quotas": [{"type": "total", "value": 1}]},
        },
        namespace="default",
    )
    listed = await quotas.get(namespace="default")
    assert [item.metadata.name for item in listed.items] == ["q"]
    status = await dynamic.resources.get(api_version="arks.ai/v1", kind="ArksQuota")
    assert status.subresources["status"].kind == "ArksQuota"
    deployments = await dynamic.resources.get(api_version="apps/v1", kind="Deployment")
    assert deployments.subresources["scale"].kind == "Scale"
    core = client.CoreV1Api(cluster.client)
    assert (await core.get_api_resources()).group_version == "v1"
