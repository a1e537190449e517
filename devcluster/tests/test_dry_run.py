"""`dryRun=All`: writes are admitted and answered as the real server does, and nothing is
stored, versioned or watched — driven by kubectl's `--dry-run=server`."""

from __future__ import annotations

import httpx

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
"""


async def test_server_dry_runs_store_nothing(cluster) -> None:
    kubectl, api = cluster.kubectl, cluster.api
    before = api.store.rv
    created = await kubectl.check(
        "create", "configmap", "c", "--from-literal=a=1", "--dry-run=server", "-o", "json"
    )
    assert created.json()["data"] == {"a": "1"}
    assert created.json()["metadata"]["uid"]
    await kubectl.check("apply", "--dry-run=server", "-f", "-", stdin=DEPLOYMENT)
    await kubectl.check("apply", "--server-side", "--dry-run=server", "-f", "-", stdin=DEPLOYMENT)
    assert api.get("v1", "configmaps", "default", "c") is None
    assert api.get("apps/v1", "deployments", "default", "web") is None
    assert api.store.rv == before, "nothing was versioned"

    await kubectl.check("apply", "-f", "-", stdin=DEPLOYMENT)
    stored = api.get("apps/v1", "deployments", "default", "web")
    changed = DEPLOYMENT.replace("replicas: 2", "replicas: 5")
    answer = await kubectl.check(
        "apply", "--dry-run=server", "-f", "-", "-o", "json", stdin=changed
    )
    assert answer.json()["spec"]["replicas"] == 5
    await kubectl.check("delete", "deployment", "web", "--dry-run=server")
    assert api.get("apps/v1", "deployments", "default", "web") == stored

    bad = DEPLOYMENT.replace("name: web,", "name: Not_Valid,")
    refused = await kubectl.run("apply", "--dry-run=server", "-f", "-", stdin=bad)
    assert refused.code != 0
    assert "Invalid value" in refused.err or "invalid" in refused.err


async def test_an_unknown_dry_run_value_is_400(cluster) -> None:
    async with httpx.AsyncClient(base_url=cluster.url) as http:
        answer = await http.post(
            "/api/v1/namespaces/default/configmaps?dryRun=Some",
            json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
        )
    assert answer.status_code == 400
    assert 'Invalid dry run value: "Some"' in answer.json()["message"]
    assert cluster.api.get("v1", "configmaps", "default", "c") is None
