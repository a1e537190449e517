"""Conformance: the upstream CRDs the Kubernetes platform renders against (LeaderWorkerSet,
RoleBasedGroup, Gateway API from ../shared/upstream) installed with real kubectl, their
CEL rules compiled and enforced — including an HTTPRoute that plain JSON Schema accepts
and the CEL rules refuse, and a transition rule (`oldSelf`)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from arks_devcluster import FakeKubeApi, cel_rules, serve
from arks_devcluster.testing import Kubectl

UPSTREAM = ("lws", "rbg", "gateway-api")


def _crds(shared: Path) -> list[Path]:
    return sorted(p for d in UPSTREAM for p in (shared / "upstream" / d).glob("*.yaml"))


def _rules(node: object) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        found += [r["rule"] for r in node.get("x-kubernetes-validations") or []]
        for value in node.values():
            found += _rules(value)
    elif isinstance(node, list):
        for value in node:
            found += _rules(value)
    return found


def _load(path: Path) -> dict:
    return next(d for d in yaml.safe_load_all(path.read_text()) if d)


@pytest.fixture
async def upstream(shared_reference, tmp_path):
    async with serve(FakeKubeApi(crds=[])) as (api, url):
        kubectl = Kubectl.for_server(tmp_path, url, "token")
        for path in _crds(shared_reference):
            await kubectl.check("apply", "--server-side=false", "-f", str(path))
        yield api, kubectl, shared_reference


def test_every_cel_rule_of_httproute_and_rolebasedgroup_compiles(shared_reference):
    counted = {}
    for name in (
        "gateway-api/gateway.networking.k8s.io_httproutes.yaml",
        "rbg/workloads.x-k8s.io_rolebasedgroups.yaml",
        "rbg/workloads.x-k8s.io_rolebasedgroupsets.yaml",
        "gateway-api/gateway.networking.k8s.io_gateways.yaml",
        "gateway-api/gateway.networking.k8s.io_gatewayclasses.yaml",
    ):
        rules = _rules(_load(shared_reference / "upstream" / name))
        for rule in rules:
            cel_rules.compile_rule(rule)  # raises on a rule celpy cannot compile
        counted[name] = len(rules)
    assert counted["gateway-api/gateway.networking.k8s.io_httproutes.yaml"] >= 100


async def test_upstream_kinds_are_served(upstream):
    _, kubectl, _ = upstream
    resources = (await kubectl.check("api-resources", "--no-headers", "-o", "name")).out.split()
    for name in (
        "leaderworkersets.leaderworkerset.x-k8s.io",
        "rolebasedgroups.workloads.x-k8s.io",
        "httproutes.gateway.networking.k8s.io",
        "gateways.gateway.networking.k8s.io",
        "referencegrants.gateway.networking.k8s.io",
    ):
        assert name in resources
    lws = {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": "lws"},
        "spec": {
            "replicas": 2,
            "leaderWorkerTemplate": {
                "size": 2,
                "workerTemplate": {
                    "spec": {"containers": [{"name": "engine", "image": "arks/engine-sim:dev"}]}
                },
            },
        },
    }
    await kubectl.check("apply", "-f", "-", stdin=json.dumps(lws))
    got = (await kubectl.check("get", "lws", "lws", "-o", "json")).json()
    # defaults from the upstream schema
    assert got["spec"]["startupPolicy"] == "LeaderCreated"
    assert got["spec"]["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"


def _route(parent_refs: list[dict]) -> dict:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "route", "namespace": "default"},
        "spec": {
            "parentRefs": parent_refs,
            "rules": [{"backendRefs": [{"name": "app-qwen", "port": 8080}]}],
        },
    }


async def test_a_bad_httproute_that_json_schema_accepts_is_refused_by_cel(upstream):
    _, kubectl, shared = upstream
    crd = _load(shared / "upstream/gateway-api/gateway.networking.k8s.io_httproutes.yaml")
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")["schema"]
    bad = _route([{"name": "gw"}, {"name": "gw"}])  # the same parent twice, no sectionName
    jsonschema.Draft7Validator(schema["openAPIV3Schema"]).validate(bad)  # accepted
    refused = await kubectl.run("apply", "-f", "-", stdin=json.dumps(bad))
    assert refused.code == 1
    assert "sectionName must be unique when parentRefs includes 2 or more" in refused.err
    good = _route([{"name": "gw", "sectionName": "http"}, {"name": "gw", "sectionName": "https"}])
    await kubectl.check("apply", "-f", "-", stdin=json.dumps(good))
    stored = (await kubectl.check("get", "httproute", "route", "-o", "json")).json()
    assert stored["spec"]["parentRefs"][0]["group"] == "gateway.networking.k8s.io"  # default
    assert stored["spec"]["rules"][0]["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]


async def test_a_transition_rule_sees_the_stored_object(upstream):
    _, kubectl, _ = upstream
    gatewayclass = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": "arks"},
        "spec": {"controllerName": "arks.ai/gateway"},
    }
    await kubectl.check("apply", "-f", "-", stdin=json.dumps(gatewayclass))
    gatewayclass["spec"]["controllerName"] = "arks.ai/other"
    refused = await kubectl.run("apply", "-f", "-", stdin=json.dumps(gatewayclass))
    assert refused.code == 1
    assert "spec.controllerName: Invalid value" in refused.err
    assert "Value is immutable" in refused.err
