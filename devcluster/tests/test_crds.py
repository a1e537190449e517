"""CustomResourceDefinitions as data, driven by real kubectl and kubernetes-asyncio:
creating one serves its kind (scope, names, printer columns, subresources), deleting it
stops serving it; writes are pruned, defaulted and validated against the schema as the
real server does (422 Invalid with one cause per field), names and labels validated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from arks_devcluster import FakeKubeApi, serve
from arks_devcluster.testing import Kubectl

REPO = Path(__file__).resolve().parents[2]
WIDGETS = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Cluster
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd], categories: [toys]}
  versions:
  - name: v1beta1
    served: true
    storage: false
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.size, statusReplicasPath: .status.size}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Color, type: string, jsonPath: .spec.color, priority: 1}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1, maximum: 10}
              color: {type: string, enum: [red, blue], default: red}
              tag: {type: string, pattern: '^[a-z]+$', maxLength: 8}
              extra: {type: object, x-kubernetes-preserve-unknown-fields: true}
          status:
            type: object
            properties:
              size: {type: integer}
"""


def widget(name: str, **spec: object) -> str:
    return json.dumps(
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}
    )


@pytest.fixture
async def empty(tmp_path):
    """A server with no CRDs installed."""
    async with serve(FakeKubeApi(crds=[])) as (api, url):
        yield api, url, Kubectl.for_server(tmp_path, url, "token")


async def test_deploy_crds_applied_with_kubectl_serve_the_arks_kinds(empty):
    _, _, kubectl = empty
    missing = await kubectl.run("get", "arksquotas")
    assert missing.code == 1
    applied = await kubectl.check("apply", "-f", str(REPO / "deploy" / "crds"))
    assert "customresourcedefinition.apiextensions.k8s.io/arksquotas.arks.ai created" in (
        applied.out
    )
    await kubectl.check(
        "wait", "--for", "condition=established", "--timeout=10s", "crd/arksquotas.arks.ai"
    )
    await kubectl.check("apply", "-f", str(REPO / "examples" / "quickstart" / "local.yaml"))
    wide = await kubectl.check("get", "aq", "-o", "wide")
    header = wide.out.splitlines()[0].split()
    assert header[:3] == ["NAME", "AGE", "RESET"]
    assert "CURRENCY" in header  # priority 1: only with -o wide
    narrow = await kubectl.check("get", "aq")
    assert "CURRENCY" not in narrow.out.splitlines()[0]
    explained = await kubectl.check("explain", "arksquota.spec.quotas")
    assert "type" in explained.out


async def test_a_crd_serves_its_kind_until_deleted(empty):
    api, _, kubectl = empty
    await kubectl.check("apply", "-f", "-", stdin=WIDGETS)
    await kubectl.check("apply", "-f", "-", stdin=widget("big", size=3, color="blue"))
    for name in ("widgets", "widget", "wd", "widgets.example.com", "toys"):
        got = await kubectl.check("get", name, "-o", "name")
        assert got.out.split() == ["widget.example.com/big"], name
    rows = (await kubectl.check("get", "wd", "-o", "wide")).out.splitlines()
    assert rows[0].split() == ["NAME", "SIZE", "COLOR"]
    assert rows[1].split() == ["big", "3", "blue"]
    # cluster-scoped: no namespace in the object; both versions served
    stored = (await kubectl.check("get", "widgets.v1beta1.example.com", "big", "-o", "json")).json()
    assert stored["apiVersion"] == "example.com/v1beta1"
    assert "namespace" not in stored["metadata"]
    # the scale subresource reads and writes the declared paths
    await kubectl.check("scale", "widget/big", "--replicas=5")
    assert api.get("example.com/v1", "widgets", "", "big")["spec"]["size"] == 5
    crd = (await kubectl.check("get", "crd", "widgets.example.com", "-o", "json")).json()
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    await kubectl.check("delete", "crd", "widgets.example.com")
    gone = await kubectl.run("get", "widgets")
    assert gone.code == 1
    assert "the server doesn't have a resource type" in gone.err


async def test_writes_are_pruned_defaulted_and_validated(empty, tmp_path):
    api, url, kubectl = empty
    await kubectl.check("apply", "-f", "-", stdin=WIDGETS)
    # kubectl asks for strict field validation: an unknown field is refused
    strict = await kubectl.run("apply", "-f", "-", stdin=widget("w", size=1, colour="x"))
    assert strict.code == 1
    assert 'strict decoding error: unknown field "spec.colour"' in strict.err
    # without it (kubernetes-asyncio's default) unknown fields are pruned, defaults applied
    async with client.ApiClient(client.Configuration(host=url)) as api_client:
        custom = client.CustomObjectsApi(api_client)
        created = await custom.create_cluster_custom_object(
            "example.com",
            "v1",
            "widgets",
            json.loads(widget("w", size=2, colour="x", extra={"any": {"thing": 1}})),
        )
        assert created["spec"] == {"size": 2, "color": "red", "extra": {"any": {"thing": 1}}}
        with pytest.raises(client.ApiException) as refused:
            await custom.create_cluster_custom_object(
                "example.com",
                "v1",
                "widgets",
                json.loads(widget("bad", size=11, color="green", tag="UPPER")),
            )
    assert refused.value.status == 422
    status = json.loads(refused.value.body)
    assert status["reason"] == "Invalid"
    causes = {c["field"]: c for c in status["details"]["causes"]}
    assert set(causes) == {"spec.size", "spec.color", "spec.tag"}
    assert causes["spec.color"]["reason"] == "FieldValueNotSupported"
    assert "should be less than or equal to 10" in causes["spec.size"]["message"]
    assert "should match '^[a-z]+$'" in causes["spec.tag"]["message"]
    required = await kubectl.run("apply", "-f", "-", stdin=widget("none"))
    assert required.code == 1
    assert 'The Widget "none" is invalid: spec.size: Required value' in required.err
    wrong_type = await kubectl.run("apply", "-f", "-", stdin=widget("t", size="three"))
    assert 'spec.size in body must be of type integer: "three"' in wrong_type.err
    assert api.get("example.com/v1", "widgets", "", "bad") is None


@pytest.mark.parametrize(
    ("kind", "name", "labels", "field"),
    [
        ("ConfigMap", "Bad_Name", {}, "metadata.name"),
        ("ConfigMap", "a" * 254, {}, "metadata.name"),
        ("Namespace", "has.dot", {}, "metadata.name"),
        ("Service", "1abc", {}, "metadata.name"),
        ("ConfigMap", "ok", {"k": "v" * 64}, "metadata.labels"),
        ("ConfigMap", "ok", {"bad key!": "v"}, "metadata.labels"),
        ("ConfigMap", "ok", {"Example.com/x": "v"}, "metadata.labels"),
    ],
)
async def test_names_and_labels_are_validated(cluster, kind, name, labels, field):
    obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "labels": labels}}
    result = await cluster.kubectl.run("apply", "-f", "-", stdin=json.dumps(obj))
    assert result.code == 1
    assert f"{field}: Invalid value" in result.err


async def test_generate_name(cluster):
    core = client.CoreV1Api(cluster.client)
    created = await core.create_namespaced_config_map(
        "default", {"metadata": {"generateName": "job-"}, "data": {}}
    )
    assert created.metadata.name.startswith("job-")
    assert len(created.metadata.name) == len("job-") + 5
    with pytest.raises(client.ApiException) as refused:
        await core.create_namespaced_config_map("default", {"metadata": {"generateName": "UP-"}})
    assert refused.value.status == 422
    assert "metadata.generateName" in json.loads(refused.value.body)["message"]
