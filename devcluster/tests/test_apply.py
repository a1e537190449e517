"""Server-side apply (kubectl apply --server-side and kubernetes-asyncio's apply patch) and
client-side kubectl apply (last-applied annotation, strategic merge patch on built-in
kinds, merge patch on custom resources), against Kubernetes' documented semantics."""

from __future__ import annotations

import json

import pytest
import yaml
from kubernetes_asyncio import client

APPLY = "application/apply-patch+yaml"


def deployment(containers: list[dict], replicas: int | None = 2) -> str:
    spec: dict = {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": spec,
        }
    )


MAIN = {
    "name": "main",
    "image": "nginx:1",
    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
    "ports": [{"containerPort": 80}],
}
SIDE = {"name": "side", "image": "busybox"}
MAIN_WITHOUT_B = {**MAIN, "env": [{"name": "A", "value": "1"}]}


async def _get(cluster) -> dict:
    got = await cluster.kubectl.check(
        "get", "deployment", "web", "-o", "json", "--show-managed-fields"
    )
    return got.json()


def _entry(obj: dict, manager: str) -> dict:
    return next(e for e in obj["metadata"]["managedFields"] if e["manager"] == manager)


async def test_apply_creates_tracks_fields_and_removes_what_is_dropped(cluster):
    created = await cluster.kubectl.check(
        "apply", "--server-side", "-f", "-", stdin=deployment([MAIN, SIDE])
    )
    assert created.out.strip() == "deployment.apps/web serverside-applied"
    obj = await _get(cluster)
    entry = _entry(obj, "kubectl")
    assert entry["operation"] == "Apply"
    assert entry["fieldsType"] == "FieldsV1"
    containers = entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    main = containers['k:{"name":"main"}']
    assert "." in main
    assert set(main["f:env"]) == {'k:{"name":"A"}', 'k:{"name":"B"}'}
    assert main["f:ports"]['k:{"containerPort":80}']["f:containerPort"] == {}
    # a label someone else sets is kept; what this manager drops goes
    await cluster.kubectl.check("label", "deployment", "web", "team=a")
    await cluster.kubectl.check(
        "apply", "--server-side", "-f", "-", stdin=deployment([MAIN_WITHOUT_B])
    )
    obj = await _get(cluster)
    assert [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]] == ["main"]
    assert obj["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]
    assert obj["metadata"]["labels"] == {"app": "web", "team": "a"}
    unchanged_version = obj["metadata"]["resourceVersion"]
    await cluster.kubectl.check(
        "apply", "--server-side", "-f", "-", stdin=deployment([MAIN_WITHOUT_B])
    )
    assert (await _get(cluster))["metadata"]["resourceVersion"] == unchanged_version


async def test_conflicts_without_force_and_shared_ownership(cluster):
    await cluster.kubectl.check("apply", "--server-side", "-f", "-", stdin=deployment([MAIN]))
    conflicting = await cluster.kubectl.run(
        "apply",
        "--server-side",
        "--field-manager=scaler",
        "-f",
        "-",
        stdin=deployment([MAIN], replicas=5),
    )
    assert conflicting.code == 1
    assert (
        'Apply failed with 1 conflict: conflict with "kubectl" using apps/v1: .spec.replicas'
        in (conflicting.err)
    )
    apps = client.AppsV1Api(cluster.client)
    with pytest.raises(client.ApiException) as refused:
        await apps.patch_namespaced_deployment(
            "web",
            "default",
            yaml.safe_load(deployment([MAIN], replicas=5)),
            field_manager="scaler",
            _content_type=APPLY,
        )
    assert refused.value.status == 409
    causes = json.loads(refused.value.body)["details"]["causes"]
    assert causes == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "kubectl" using apps/v1',
            "field": ".spec.replicas",
        }
    ]
    # the same value is shared, not a conflict; force takes a field over
    await cluster.kubectl.check(
        "apply",
        "--server-side",
        "--field-manager=sharer",
        "-f",
        "-",
        stdin=deployment([MAIN], replicas=2),
    )
    await cluster.kubectl.check(
        "apply",
        "--server-side",
        "--field-manager=scaler",
        "--force-conflicts",
        "-f",
        "-",
        stdin=deployment([MAIN], replicas=5),
    )
    obj = await _get(cluster)
    assert obj["spec"]["replicas"] == 5
    assert "f:replicas" in _entry(obj, "scaler")["fieldsV1"]["f:spec"]
    assert "f:replicas" not in _entry(obj, "kubectl")["fieldsV1"]["f:spec"]
    # kubectl drops replicas from its configuration: scaler still owns it, it stays
    await cluster.kubectl.check(
        "apply", "--server-side", "-f", "-", stdin=deployment([MAIN], replicas=None)
    )
    assert (await _get(cluster))["spec"]["replicas"] == 5


async def test_an_update_takes_ownership_and_apply_needs_a_field_manager(cluster):
    await cluster.kubectl.check("apply", "--server-side", "-f", "-", stdin=deployment([MAIN]))
    await cluster.kubectl.check("scale", "deployment", "web", "--replicas=3")
    again = await cluster.kubectl.run("apply", "--server-side", "-f", "-", stdin=deployment([MAIN]))
    assert again.code == 1
    assert "conflict with" in again.err
    assert ".spec.replicas" in again.err
    apps = client.AppsV1Api(cluster.client)
    with pytest.raises(client.ApiException) as missing:
        await apps.patch_namespaced_deployment(
            "web", "default", yaml.safe_load(deployment([MAIN])), _content_type=APPLY
        )
    assert missing.value.status == 422
    assert "fieldManager: Required value" in json.loads(missing.value.body)["message"]


LISTED = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: pools.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: pools, singular: pool, kind: Pool}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              members:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties: {name: {type: string}, weight: {type: integer}}
              tags: {type: array, x-kubernetes-list-type: set, items: {type: string}}
              note: {type: string}
"""


def pool(**spec) -> str:
    return json.dumps(
        {"apiVersion": "example.com/v1", "kind": "Pool", "metadata": {"name": "p"}, "spec": spec}
    )


async def test_list_maps_and_sets_of_a_crd_schema_merge_per_item(cluster):
    kubectl = cluster.kubectl
    await kubectl.check("apply", "-f", "-", stdin=LISTED)
    await kubectl.check(
        "apply",
        "--server-side",
        "--field-manager=a",
        "-f",
        "-",
        stdin=pool(members=[{"name": "x", "weight": 1}], tags=["t1"]),
    )
    await kubectl.check(
        "apply",
        "--server-side",
        "--field-manager=b",
        "-f",
        "-",
        stdin=pool(members=[{"name": "y", "weight": 2}], tags=["t2"]),
    )
    spec = (await kubectl.check("get", "pool", "p", "-o", "json")).json()["spec"]
    assert spec["members"] == [{"name": "x", "weight": 1}, {"name": "y", "weight": 2}]
    assert spec["tags"] == ["t1", "t2"]
    await kubectl.check(
        "apply", "--server-side", "--field-manager=a", "-f", "-", stdin=pool(tags=["t1"])
    )
    spec = (await kubectl.check("get", "pool", "p", "-o", "json")).json()["spec"]
    assert spec["members"] == [{"name": "y", "weight": 2}]


async def test_client_side_apply_strategic_merge_on_builtins_and_merge_patch_on_crs(cluster):
    kubectl = cluster.kubectl
    await kubectl.check("apply", "-f", "-", stdin=deployment([MAIN, SIDE]))
    await kubectl.check("label", "deployment", "web", "team=a")
    configured = await kubectl.check("apply", "-f", "-", stdin=deployment([MAIN_WITHOUT_B]))
    assert configured.out.strip() == "deployment.apps/web configured"
    obj = await _get(cluster)
    containers = obj["spec"]["template"]["spec"]["containers"]
    assert containers == [MAIN_WITHOUT_B]
    assert obj["metadata"]["labels"] == {"app": "web", "team": "a"}  # not in last-applied
    await kubectl.check("apply", "-f", "-", stdin=LISTED)
    await kubectl.check("apply", "-f", "-", stdin=pool(note="n", tags=["t"]))
    await kubectl.check("apply", "-f", "-", stdin=pool(tags=["t"]))
    spec = (await kubectl.check("get", "pool", "p", "-o", "json")).json()["spec"]
    assert spec == {"tags": ["t"]}
