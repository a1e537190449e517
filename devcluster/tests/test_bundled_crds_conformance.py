"""Conformance: the bundled CRDs against the upstream ones in ../shared/upstream/ (LWS,
RBG, Gateway API). For each bundled kind: the same group, names, scope, versions,
subresources and printer columns; a schema that is a subset of upstream's (every field it
declares exists upstream with the same type, format, enum, default, bounds, pattern and
list type; every CEL rule is upstream's; an object it models only in part keeps the rest);
and the objects Arks renders (bundled_crds_samples.yaml) validate against the full upstream
CRDs and are stored exactly as the bundled CRDs store them (same defaults, nothing pruned
differently)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from arks_devcluster import FakeKubeApi
from arks_devcluster.bundled_crds import bundled_crds

pytestmark = pytest.mark.conformance

Obj = dict[str, Any]
UPSTREAM = ("lws", "rbg", "gateway-api")
SAMPLES = Path(__file__).with_name("bundled_crds_samples.yaml")

COMPARED = (
    "type",
    "format",
    "enum",
    "default",
    "nullable",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-embedded-resource",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "pattern",
    "anyOf",
)
"""Keywords that, where the bundled schema states them, must be exactly upstream's."""
BOTH_WAYS = ("type", "default", "x-kubernetes-int-or-string", "x-kubernetes-list-type")
"""Keywords upstream states that the bundled schema must state too, where it models the
field: the same objects are defaulted alike and merged alike by server-side apply."""
KNOWN = (
    *COMPARED,
    "properties",
    "items",
    "additionalProperties",
    "required",
    "description",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
)


def differences(ours: Obj, theirs: Obj | None, path: str = "") -> list[str]:
    """How the bundled schema `ours` fails to be a subset of the upstream `theirs`."""
    where = path or "<root>"
    if theirs is None:
        return [f"{where}: not in the upstream schema"]
    found = [f"{where}: unexpected keyword {key!r}" for key in ours if key not in KNOWN]
    found += [
        f"{where}: {key} {ours[key]!r} is not upstream's {theirs.get(key)!r}"
        for key in COMPARED
        if key in ours and ours[key] != theirs.get(key)
    ]
    found += [
        f"{where}: upstream states {key} {theirs[key]!r}"
        for key in BOTH_WAYS
        if key in theirs and key not in ours
    ]
    extra = sorted(set(ours.get("required", [])) - set(theirs.get("required", [])))
    if extra:
        found.append(f"{where}: requires {extra}, upstream does not")
    rules = {(r["rule"], r.get("message")) for r in theirs.get("x-kubernetes-validations", [])}
    found += [
        f"{where}: rule is not upstream's: {rule['rule']}"
        for rule in ours.get("x-kubernetes-validations", [])
        if (rule["rule"], rule.get("message")) not in rules
    ]
    properties = ours.get("properties")
    upstream_properties = theirs.get("properties") or {}
    if properties is not None:
        missing = sorted(set(upstream_properties) - set(properties))
        if missing and not ours.get("x-kubernetes-preserve-unknown-fields"):
            found.append(f"{where}: would prune upstream's {missing}")
        for name, sub in properties.items():
            found += differences(sub, upstream_properties.get(name), f"{path}.{name}")
    for key, suffix in (("items", "[]"), ("additionalProperties", "{}")):
        if isinstance(ours.get(key), dict):
            other = theirs.get(key)
            found += differences(
                ours[key], other if isinstance(other, dict) else None, path + suffix
            )
    return found


@cache
def _upstream(shared: Path) -> dict[str, Obj]:
    """The upstream CRDs by name, parsed once (read-only: 3 MB of YAML)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crds: dict[str, Obj] = {}
    for directory in UPSTREAM:
        for path in sorted((shared / "upstream" / directory).glob("*.yaml")):
            for document in yaml.load_all(path.read_text(), Loader=loader):
                if document:
                    crds[document["metadata"]["name"]] = document
    return crds


def _version(crd: Obj, name: str) -> Obj:
    found: Obj = next(v for v in crd["spec"]["versions"] if v["name"] == name)
    return found


def _samples() -> list[Obj]:
    return [d for d in yaml.safe_load_all(SAMPLES.read_text()) if d]


BUNDLED = {crd["metadata"]["name"]: crd for crd in bundled_crds()}


@pytest.fixture
def upstream(shared_reference: Path) -> dict[str, Obj]:
    return _upstream(shared_reference)


def test_every_upstream_kind_arks_uses_is_bundled(upstream: dict[str, Obj]) -> None:
    assert set(BUNDLED) == set(upstream)


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_names_scope_versions_subresources_and_columns_are_upstreams(
    upstream: dict[str, Obj], name: str
) -> None:
    ours, theirs = BUNDLED[name]["spec"], upstream[name]["spec"]
    assert ours["group"] == theirs["group"]
    assert ours["names"] == theirs["names"]
    assert ours["scope"] == theirs["scope"]
    assert [v["name"] for v in ours["versions"]] == [v["name"] for v in theirs["versions"]]
    for version in ours["versions"]:
        other = _version(upstream[name], version["name"])
        for key in ("served", "storage", "subresources", "additionalPrinterColumns"):
            assert version.get(key) == other.get(key), f"{version['name']}: {key}"


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_the_schema_is_a_subset_of_upstreams(upstream: dict[str, Obj], name: str) -> None:
    for version in BUNDLED[name]["spec"]["versions"]:
        theirs = _version(upstream[name], version["name"])["schema"]["openAPIV3Schema"]
        assert differences(version["schema"]["openAPIV3Schema"], theirs) == [], version["name"]


def test_the_subset_check_catches_differences(upstream: dict[str, Obj]) -> None:
    # Guards the test above against comparing nothing.
    name = "leaderworkersets.leaderworkerset.x-k8s.io"
    schema = bundled_crds()[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert bundled_crds()[0]["metadata"]["name"] == name
    spec = schema["properties"]["spec"]["properties"]
    spec["replicas"]["type"] = "string"
    spec["replicaCount"] = {"type": "integer"}
    spec["startupPolicy"]["enum"] = ["LeaderCreated"]
    del spec["leaderWorkerTemplate"]["properties"]["size"]["default"]
    spec["networkConfig"]["x-kubernetes-validations"] = [{"rule": "true"}]
    spec["rolloutStrategy"]["required"] = ["type", "rollingUpdateConfiguration"]
    del spec["rolloutStrategy"]["properties"]["rollingUpdateConfiguration"]
    found = differences(schema, _version(upstream[name], "v1")["schema"]["openAPIV3Schema"])
    assert [f.split(":")[0] for f in found] == [
        ".spec.replicas",
        ".spec.startupPolicy",
        ".spec.networkConfig",
        ".spec.rolloutStrategy",
        ".spec.rolloutStrategy",
        ".spec.leaderWorkerTemplate.size",
        ".spec.replicaCount",
    ]


def test_arks_objects_validate_against_the_full_upstream_crds_and_store_alike(
    upstream: dict[str, Obj],
) -> None:
    theirs = FakeKubeApi(crds=list(upstream.values()))
    ours = FakeKubeApi(crds=bundled_crds())
    kinds = set()
    for obj in _samples():
        kinds.add(obj["kind"])
        by_upstream = theirs.create(obj)  # raises ApiError (422) if upstream refuses it
        by_bundle = ours.create(obj)
        for part in ("spec", "status"):
            assert by_bundle.get(part) == by_upstream.get(part), (obj["kind"], part)
    assert kinds == {c["spec"]["names"]["kind"] for c in BUNDLED.values()}
