"""Optional RBAC: with `rbac=True` a ServiceAccount token may do exactly what the Roles
and ClusterRoles bound to it grant — tested with deploy/'s RBAC for the accountant
(get arksquotas, get/update arksquotas/status) — and nothing else (403 Forbidden)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from arks_devcluster import FakeKubeApi
from arks_devcluster.server import serving
from arks_devcluster.testing import Kubectl

REPO = Path(__file__).resolve().parents[2]
ADMIN = "admin-secret"
GROUP, VERSION, PLURAL = "arks.ai", "v1", "arksquotas"
QUOTA = {
    "apiVersion": "arks.ai/v1",
    "kind": "ArksQuota",
    "metadata": {"name": "q", "namespace": "default"},
    "spec": {"quotas": [{"type": "total", "value": 10}]},
}


@dataclass
class Secured:
    api: FakeKubeApi
    url: str
    kubectl: Kubectl
    ca: Path

    def client(self, token: str | None) -> client.ApiClient:
        configuration = client.Configuration(host=self.url)
        configuration.ssl_ca_cert = str(self.ca)
        if token is not None:
            configuration.api_key = {"BearerToken": token}
            configuration.api_key_prefix = {"BearerToken": "Bearer"}
        return client.ApiClient(configuration)


@pytest.fixture
async def secured(tmp_path):
    """HTTPS: kubectl sends its token only over TLS."""
    api = FakeKubeApi(rbac=True, admin_token=ADMIN)
    async with serving(api, tls=True) as running:
        ca = tmp_path / "ca.crt"
        ca.write_bytes(running.ca_pem)
        kubectl = Kubectl.for_server(tmp_path, running.url, ADMIN, ca_pem=running.ca_pem)
        yield Secured(api, running.url, kubectl, ca)


async def _status(call) -> int:
    try:
        await call
    except client.ApiException as exc:
        return int(exc.status)
    return 200


async def test_the_accountant_may_do_what_deploy_grants_and_nothing_else(secured, tmp_path):
    api, url, admin = secured.api, secured.url, secured.kubectl
    await admin.check("apply", "-k", str(REPO / "deploy"))
    await admin.check("apply", "-f", "-", stdin=json.dumps(QUOTA))
    minted = await admin.check("create", "token", "arks-accountant", "-n", "arks-system")
    token = minted.out.strip()
    async with secured.client(token) as api_client:
        custom = client.CustomObjectsApi(api_client)
        quota = await custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "q")
        status = {**quota, "status": {"quotaStatus": [{"type": "total", "used": 4}]}}
        written = await custom.replace_namespaced_custom_object_status(
            GROUP, VERSION, "default", PLURAL, "q", status
        )
        assert written["status"]["quotaStatus"][0]["used"] == 4
        assert (
            await _status(custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL))
            == 403
        )
        assert (
            await _status(
                custom.replace_namespaced_custom_object(
                    GROUP, VERSION, "default", PLURAL, "q", written
                )
            )
            == 403
        )
        assert (
            await _status(
                custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, "default", PLURAL, "q", {"status": {}}
                )
            )
            == 403
        )
        core = client.CoreV1Api(api_client)
        with pytest.raises(client.ApiException) as refused:
            await core.list_namespaced_config_map("default")
    assert refused.value.status == 403
    body = json.loads(refused.value.body)
    assert body["reason"] == "Forbidden"
    assert body["message"] == (
        'configmaps is forbidden: User "system:serviceaccount:arks-system:arks-accountant" '
        'cannot list resource "configmaps" in API group "" in the namespace "default"'
    )
    accountant = Kubectl.for_server(
        tmp_path / "accountant", url, token, ca_pem=secured.ca.read_bytes()
    )
    got = await accountant.check("get", "aq", "q", "-n", "default", "-o", "name")
    assert got.out.strip() == "arksquota.arks.ai/q"
    listed = await accountant.run("get", "aq", "-n", "default")
    assert listed.code == 1
    assert 'cannot list resource "arksquotas" in API group "arks.ai"' in listed.err
    assert api.get("arks.ai/v1", PLURAL, "default", "q")["status"]["quotaStatus"][0]["used"] == 4


async def test_role_bindings_resource_names_and_unknown_tokens(secured):
    api, admin = secured.api, secured.kubectl
    manifests = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "one-configmap", "namespace": "default"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "verbs": ["get", "list"],
                    "resourceNames": ["allowed"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "reader", "namespace": "default"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "one-configmap",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "default"}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "allowed"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}},
    ]
    for manifest in manifests:
        await admin.check("apply", "-f", "-", stdin=json.dumps(manifest))
    token = api.token_for("default", "reader")
    async with secured.client(token) as api_client:
        core = client.CoreV1Api(api_client)
        assert (await core.read_namespaced_config_map("allowed", "default")).metadata.name == (
            "allowed"
        )
        assert await _status(core.read_namespaced_config_map("other", "default")) == 403
        assert await _status(core.list_namespaced_config_map("default")) == 403  # names never list
        assert await _status(core.read_namespaced_config_map("allowed", "kube-system")) == 403
    async with secured.client("not-a-token") as api_client:
        assert await _status(client.CoreV1Api(api_client).list_namespace()) == 401
    async with secured.client(None) as api_client:
        assert await _status(client.CoreV1Api(api_client).list_namespace()) == 403
