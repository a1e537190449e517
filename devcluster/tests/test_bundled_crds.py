"""The bundled CRDs (LeaderWorkerSet, RoleBasedGroup(Set), Gateway API kinds) without the
shared reference material: they ship in the package, are valid structural CRDs, install
in-process and with real kubectl, print upstream's columns, accept the objects Arks
renders (keeping the fields they do not model, defaulting the ones they do), let
controllers write status and scale, and enforce the CEL rules carried over from upstream.
The comparison with the upstream CRDs is in test_bundled_crds_conformance.py."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_asyncio import client
from kubernetes_validate.utils import latest_version

from arks_devcluster import FakeKubeApi, cel_rules
from arks_devcluster.bundled_crds import FILES, bundled_crds
from arks_devcluster.errors import ApiError

SAMPLES = Path(__file__).with_name("bundled_crds_samples.yaml")
PACKAGE = "arks_devcluster.bundled_crds"
NAMES = {
    "leaderworkersets.leaderworkerset.x-k8s.io",
    "rolebasedgroups.workloads.x-k8s.io",
    "rolebasedgroupsets.workloads.x-k8s.io",
    "gatewayclasses.gateway.networking.k8s.io",
    "gateways.gateway.networking.k8s.io",
    "httproutes.gateway.networking.k8s.io",
    "referencegrants.gateway.networking.k8s.io",
}
INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]


def samples() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(SAMPLES.read_text()) if d]


def sample(kind: str, name: str) -> dict[str, Any]:
    return next(s for s in samples() if s["kind"] == kind and s["metadata"]["name"] == name)


def _plural(obj: dict[str, Any]) -> str:
    return {
        "LeaderWorkerSet": "leaderworkersets",
        "RoleBasedGroup": "rolebasedgroups",
        "RoleBasedGroupSet": "rolebasedgroupsets",
        "GatewayClass": "gatewayclasses",
        "Gateway": "gateways",
        "HTTPRoute": "httproutes",
        "ReferenceGrant": "referencegrants",
    }[obj["kind"]]


def _stored(api: FakeKubeApi, obj: dict[str, Any]) -> dict[str, Any]:
    namespace = obj["metadata"].get("namespace", "")
    found = api.get(obj["apiVersion"], _plural(obj), namespace, obj["metadata"]["name"])
    assert found is not None
    return found


def _schemas(crd: dict[str, Any]) -> list[dict[str, Any]]:
    return [v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"]]


def _nodes(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, sub in (node.get("properties") or {}).items():
        found += _nodes(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += _nodes(node["additionalProperties"], f"{path}{{}}")
    return found


def _structural_problems(path: str, node: dict[str, Any]) -> list[str]:
    """Kubernetes' structural-schema rules, as far as these schemas use the features."""
    problems = []
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    int_or_string = node.get("x-kubernetes-int-or-string") is True
    if "type" not in node and not preserve and not int_or_string:
        problems.append(f"{path}: no type")
    if "anyOf" in node and not (int_or_string and node["anyOf"] == INT_OR_STRING):
        problems.append(f"{path}: anyOf other than int-or-string")
    if "additionalProperties" in node and "properties" in node:
        problems.append(f"{path}: additionalProperties with properties")
    if "default" in node:
        plain = {k: v for k, v in node.items() if k != "default"}
        errors = jsonschema.Draft4Validator(plain).iter_errors(node["default"])
        problems += [f"{path}: default invalid: {e.message}" for e in errors]
    if node.get("x-kubernetes-list-type") == "map":
        item = node["items"]
        for key in node["x-kubernetes-list-map-keys"]:
            if key not in item.get("required", []) and "default" not in item["properties"][key]:
                problems.append(f"{path}: list-map key {key} neither required nor defaulted")
    return problems


# ------------------------------------------------------------------ the data files


def test_the_data_files_ship_in_the_package_and_load() -> None:
    package = resources.files(PACKAGE)
    assert sorted(FILES) == sorted(p.name for p in package.iterdir() if p.name.endswith(".yaml")), (
        "a YAML file in the package is not loaded (or a loaded one is missing)"
    )
    crds = bundled_crds()
    assert {c["metadata"]["name"] for c in crds} == NAMES
    assert len(crds) == len(NAMES)
    # fresh objects on every call, with no sharing between versions (YAML aliases)
    gateway = next(c for c in crds if c["spec"]["names"]["kind"] == "HTTPRoute")
    v1, v1beta1 = _schemas(gateway)
    assert v1 == v1beta1
    v1["properties"]["spec"]["properties"].clear()
    assert v1beta1["properties"]["spec"]["properties"]
    again = next(c for c in bundled_crds() if c["spec"]["names"]["kind"] == "HTTPRoute")
    assert _schemas(again)[0]["properties"]["spec"]["properties"]


@pytest.mark.parametrize("crd", bundled_crds(), ids=lambda c: c["spec"]["names"]["kind"])
def test_each_crd_is_a_valid_structural_crd_with_compiling_rules(crd: dict[str, Any]) -> None:
    kubernetes_validate.validate(crd, latest_version(), strict=True)
    assert crd["metadata"]["name"] == f"{crd['spec']['names']['plural']}.{crd['spec']['group']}"
    assert [v["name"] for v in crd["spec"]["versions"] if v["storage"]] != []
    for schema in _schemas(crd):
        assert schema["properties"]["metadata"] == {"type": "object"}
        problems = [p for path, node in _nodes(schema) for p in _structural_problems(path, node)]
        assert problems == []
        for _, node in _nodes(schema):
            for rule in node.get("x-kubernetes-validations", []):
                cel_rules.compile_rule(rule["rule"])  # raises on a rule that does not compile


# ------------------------------------------------------------------ in-process


def test_every_bundled_crd_installs_and_serves_its_kind() -> None:
    api = FakeKubeApi(crds=bundled_crds())
    for crd in bundled_crds():
        stored = api.get(
            "apiextensions.k8s.io/v1", "customresourcedefinitions", "", crd["metadata"]["name"]
        )
        assert stored is not None
        conditions = {c["type"]: c["status"] for c in stored["status"]["conditions"]}
        assert conditions == {"NamesAccepted": "True", "Established": "True"}
        for version in crd["spec"]["versions"]:
            rtype = api.registry.by_kind(
                f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"]
            )
            assert rtype.plural == crd["spec"]["names"]["plural"]
            assert rtype.namespaced == (crd["spec"]["scope"] == "Namespaced")
    # the arks.ai kinds are not among them: `arks cluster up` installs both sets
    assert not any(c["spec"]["group"] == "arks.ai" for c in bundled_crds())


def test_the_objects_arks_renders_are_accepted_and_keep_their_unmodelled_fields() -> None:
    api = FakeKubeApi(crds=bundled_crds())
    for obj in samples():
        api.create(obj)
    lws = _stored(api, sample("LeaderWorkerSet", "qwen"))["spec"]
    leader = lws["leaderWorkerTemplate"]["leaderTemplate"]["spec"]
    assert leader["containers"][0]["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert leader["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    assert leader["containers"][0]["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert leader["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert lws["leaderWorkerTemplate"]["size"] == 2
    rbg = _stored(api, sample("RoleBasedGroup", "pd-0"))["spec"]["roles"]
    assert [r["name"] for r in rbg] == ["scheduler", "prefill", "decode"]
    assert rbg[0]["rolloutStrategy"]["rollingUpdate"]["partition"] == 0  # defaulted
    assert rbg[0]["servicePorts"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert rbg[1]["template"]["spec"]["schedulingGates"] == [{"name": "example.com/quota"}]
    patch = rbg[1]["leaderWorkerSet"]["patchLeaderTemplate"]
    assert patch["spec"]["containers"][0]["ports"] == [{"containerPort": 8080}]  # verbatim
    rbgs = _stored(api, sample("RoleBasedGroupSet", "qwen"))["spec"]
    worker = rbgs["template"]["roles"][0]["leaderWorkerSet"]["patchWorkerTemplate"]
    assert worker["spec"]["containers"][0]["name"] == "instance"
    route = _stored(api, sample("HTTPRoute", "qwen"))["spec"]
    backend = route["rules"][0]["backendRefs"][0]
    assert backend["group"] == ""  # defaulted
    assert backend["kind"] == "Service"
    assert backend["filters"][0]["requestHeaderModifier"] == {
        "set": [{"name": "x-arks-endpoint", "value": "qwen"}]
    }
    plugins = _stored(api, sample("HTTPRoute", "arks-gateway-http-router"))["spec"]
    assert plugins["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "arks-eg"}
    ]
    assert plugins["rules"][0]["backendRefs"][0]["weight"] == 1
    gateway = _stored(api, sample("Gateway", "arks-eg"))
    assert [c["reason"] for c in gateway["status"]["conditions"]] == ["Pending", "Pending"]
    assert gateway["spec"]["listeners"][0]["allowedRoutes"] == {"namespaces": {"from": "All"}}


def test_fields_unknown_to_a_fully_modelled_object_are_pruned_as_upstream_would() -> None:
    api = FakeKubeApi(crds=bundled_crds())
    lws = sample("LeaderWorkerSet", "qwen")
    lws["spec"]["replica"] = 3  # a typo: spec is modelled entirely, as upstream's
    lws["status"] = {"replicas": 1, "extra": True}
    api.create(lws)
    stored = _stored(api, lws)
    assert "replica" not in stored["spec"]
    assert stored["status"] == {"replicas": 1}


@pytest.mark.parametrize(
    ("kind", "name", "change", "field", "message"),
    [
        ("LeaderWorkerSet", "qwen", {"spec": {"replicas": -1}}, "spec.replicas", "0"),
        (
            "LeaderWorkerSet",
            "qwen",
            {"spec": {"startupPolicy": "Eventually"}},
            "spec.startupPolicy",
            "LeaderReady",
        ),
        ("RoleBasedGroup", "pd-0", {"spec": {"roles": []}}, "spec.roles", "at least 1"),
        ("Gateway", "arks-eg", {"spec": {"listeners": [{"name": "x"}]}}, "port", "Required"),
    ],
)
def test_schema_violations_are_refused(
    kind: str, name: str, change: dict[str, Any], field: str, message: str
) -> None:
    api = FakeKubeApi(crds=bundled_crds())
    obj = sample(kind, name)
    for key, value in change["spec"].items():
        obj["spec"][key] = value
    with pytest.raises(ApiError) as refused:
        api.create(obj)
    assert refused.value.code == 422
    assert field in str(refused.value)
    assert message in str(refused.value)


# ------------------------------------------------------------------ over HTTP


@pytest.fixture
def bundled(cluster: Any) -> Any:
    """The dev cluster with the bundled CRDs installed (in-process)."""
    for crd in bundled_crds():
        cluster.api.create(crd)
    return cluster


async def test_kubectl_applies_the_files_and_prints_upstream_columns(cluster: Any) -> None:
    kubectl = cluster.kubectl
    with resources.as_file(resources.files(PACKAGE)) as directory:
        for name in FILES:
            applied = await kubectl.check("apply", "-f", str(directory / name))
            assert "customresourcedefinition.apiextensions.k8s.io/" in applied.out
    await kubectl.check(
        "wait", "--for", "condition=established", *(f"crd/{name}" for name in sorted(NAMES))
    )
    names = (await kubectl.check("api-resources", "--no-headers", "-o", "name")).out.split()
    assert set(names) >= NAMES
    await kubectl.check("apply", "-f", str(SAMPLES))
    lws = (await kubectl.check("get", "lws")).out.splitlines()
    assert lws[0].split() == ["NAME", "READY", "DESIRED", "UP-TO-DATE", "AGE"]
    assert lws[1].split()[:2] == ["qwen", "1"]  # no status yet: Ready and Up-to-date empty
    routes = (await kubectl.check("get", "httproute")).out.splitlines()
    assert routes[0].split() == ["NAME", "HOSTNAMES", "AGE"]
    assert sorted(r.split()[0] for r in routes[1:]) == ["arks-gateway-http-router", "qwen"]
    gateways = (await kubectl.check("get", "gtw")).out.splitlines()
    assert gateways[0].split() == ["NAME", "CLASS", "ADDRESS", "PROGRAMMED", "AGE"]
    assert gateways[1].split()[:2] == ["arks-eg", "arks-eg"]
    classes = (await kubectl.check("get", "gc", "-o", "wide")).out.splitlines()
    assert classes[0].split() == ["NAME", "CONTROLLER", "ACCEPTED", "AGE", "DESCRIPTION"]
    rbg = (await kubectl.check("get", "rbg")).out.splitlines()
    assert rbg[0].split() == ["NAME", "READY", "AGE"]
    everything = (await kubectl.check("get", "gateway-api")).out  # the category
    assert "httproute.gateway.networking.k8s.io/qwen" in everything
    explained = (await kubectl.check("explain", "lws.spec.leaderWorkerTemplate.size")).out
    assert "integer" in explained


async def test_controllers_write_status_and_scale(bundled: Any) -> None:
    custom = client.CustomObjectsApi(bundled.client)
    group, version = "leaderworkerset.x-k8s.io", "v1"
    await custom.create_namespaced_custom_object(
        group, version, "default", "leaderworkersets", sample("LeaderWorkerSet", "qwen")
    )
    status = {
        "replicas": 1,
        "readyReplicas": 1,
        "updatedReplicas": 1,
        "hpaPodSelector": "leaderworkerset.sigs.k8s.io/name=qwen",
        "conditions": [
            {
                "type": "Available",
                "status": "True",
                "reason": "AllGroupsReady",
                "message": "All replicas are ready",
                "lastTransitionTime": "2025-01-01T00:00:00Z",
            }
        ],
    }
    written = await custom.patch_namespaced_custom_object_status(
        group,
        version,
        "default",
        "leaderworkersets",
        "qwen",
        [{"op": "add", "path": "/status", "value": status}],
    )
    assert written["status"] == status
    row = (await bundled.kubectl.check("get", "lws", "qwen", "--no-headers")).out.split()
    assert row[:4] == ["qwen", "1", "1", "1"]
    await bundled.kubectl.check("scale", "lws", "qwen", "--replicas", "3")
    scale = await custom.get_namespaced_custom_object_scale(
        group, version, "default", "leaderworkersets", "qwen"
    )
    assert scale["spec"]["replicas"] == 3
    assert scale["status"]["selector"] == "leaderworkerset.sigs.k8s.io/name=qwen"
    # a status that breaks the schema is refused like any other write
    bad = copy.deepcopy(status)
    bad["conditions"][0]["status"] = "Maybe"
    with pytest.raises(client.ApiException) as refused:
        await custom.patch_namespaced_custom_object_status(
            group,
            version,
            "default",
            "leaderworkersets",
            "qwen",
            [{"op": "replace", "path": "/status", "value": bad}],
        )
    assert refused.value.status == 422
    route = sample("HTTPRoute", "qwen")
    await custom.create_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", "default", "httproutes", route
    )
    parents = {
        "parents": [
            {
                "parentRef": {"name": "arks-eg"},
                "controllerName": "arks.ai/gateway",
                "conditions": [{**status["conditions"][0], "type": "Accepted"}],
            }
        ]
    }
    written = await custom.patch_namespaced_custom_object_status(
        "gateway.networking.k8s.io",
        "v1",
        "default",
        "httproutes",
        "qwen",
        [{"op": "add", "path": "/status", "value": parents}],
    )
    assert written["status"]["parents"][0]["parentRef"]["kind"] == "Gateway"  # defaulted


def _route(**rule: Any) -> dict[str, Any]:
    rule.setdefault("backendRefs", [{"name": "arks-application-qwen", "port": 8080}])
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": {"parentRefs": [{"name": "arks-eg"}], "rules": [rule]},
    }


def _with_parents(*parents: dict[str, Any]) -> dict[str, Any]:
    route = _route()
    route["spec"]["parentRefs"] = list(parents)
    return route


@pytest.mark.parametrize(
    ("route", "field", "message"),
    [
        (
            _with_parents({"name": "arks-eg"}, {"name": "arks-eg"}),
            "spec.parentRefs",
            "sectionName must be unique when parentRefs includes 2 or more references",
        ),
        (
            _route(matches=[{"path": {"type": "PathPrefix", "value": "/v1//chat"}}]),
            "spec.rules[0].matches[0].path",
            "must not contain '//'",
        ),
        (
            _route(matches=[{"path": {"type": "Exact", "value": "v1"}}]),
            "spec.rules[0].matches[0].path",
            "value must be an absolute path and start with '/'",
        ),
        (
            _route(backendRefs=[{"name": "arks-application-qwen"}]),
            "spec.rules[0].backendRefs[0]",
            "Must have port for Service reference",
        ),
        (
            _route(filters=[{"type": "RequestRedirect", "requestRedirect": {"port": 443}}]),
            "spec.rules[0]",
            "RequestRedirect filter must not be used together with backendRefs",
        ),
        (
            _route(filters=[{"type": "RequestHeaderModifier"}]),
            "spec.rules[0].filters[0]",
            "filter.requestHeaderModifier must be specified",
        ),
        (
            _route(timeouts={"request": "10s", "backendRequest": "20s"}),
            "spec.rules[0].timeouts",
            "backendRequest timeout cannot be longer than request timeout",
        ),
    ],
    ids=["parents", "double-slash", "relative", "no-port", "redirect", "filter", "timeouts"],
)
async def test_an_httproute_breaking_a_carried_cel_rule_is_refused_with_422(
    bundled: Any, route: dict[str, Any], field: str, message: str
) -> None:
    custom = client.CustomObjectsApi(bundled.client)
    with pytest.raises(client.ApiException) as refused:
        await custom.create_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", "default", "httproutes", route
        )
    assert refused.value.status == 422
    status = json.loads(refused.value.body)
    assert status["reason"] == "Invalid"
    causes = [c for c in status["details"]["causes"] if message in c["message"]]
    assert [c["field"] for c in causes] == [field], status["details"]["causes"]


async def test_kubectl_shows_the_cel_message_and_the_gatewayclass_controller_is_immutable(
    bundled: Any,
) -> None:
    kubectl = bundled.kubectl
    refused = await kubectl.run(
        "apply", "-f", "-", stdin=json.dumps(_with_parents({"name": "gw"}, {"name": "gw"}))
    )
    assert refused.code == 1
    assert 'The HTTPRoute "bad" is invalid: spec.parentRefs' in refused.err
    gatewayclass = sample("GatewayClass", "arks-eg")
    await kubectl.check("apply", "-f", "-", stdin=json.dumps(gatewayclass))
    gatewayclass["spec"]["controllerName"] = "arks.ai/other"
    changed = await kubectl.run("apply", "-f", "-", stdin=json.dumps(gatewayclass))
    assert changed.code == 1
    assert "spec.controllerName: Invalid value" in changed.err
    assert "Value is immutable" in changed.err
