"""Our CRDs against upstream's: every upstream field path exists (or sits under a
pass-through subtree), upstream enums/defaults/bounds are kept, names and printer columns
are a superset, and every upstream and spec example validates against our schemas, before
and after API-server-style defaulting, meaning the same to the models either way.

Upstream material comes from `<repo>/../shared` (`arks_common.testing.reference`): these
are conformance tests (`make conformance`), which fail, never skip, when it is missing.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import yaml

from arks_common import crds
from arks_common.resources import KIND_INFO, dump_resource, parse_resource
from arks_common.testing.reference import shared_path

pytestmark = pytest.mark.conformance

UPSTREAM = ("upstream", "arks")
# A stale, unused older schema that upstream still ships (misspelled plural).
STALE_UPSTREAM = "crd-arks.ai_arksdisaggregatedappications.yaml"
# Bounds we relax on purpose (documented in docs/resources.md): minItems of quota lists
# applies only when there is no money budget, so it lives in an anyOf branch.
RELAXED = {("ArksQuota", ".spec.quotas", "minItems")}
KEPT = ("enum", "default", "minimum", "maximum", "maxItems", "minItems", "maxLength", "pattern")


# libyaml when present: the upstream CRDs are 46k lines.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def _load_upstream() -> tuple[dict[str, Any], ...]:
    files = sorted(shared_path(*UPSTREAM).glob("crd-arks.ai_*.yaml"))
    return tuple(
        yaml.load(f.read_text(), Loader=_Loader) for f in files if f.name != STALE_UPSTREAM
    )


def upstream_crds() -> list[dict[str, Any]]:
    docs = copy.deepcopy(list(_load_upstream()))
    assert len(docs) == 6, [d["metadata"]["name"] for d in docs]
    return docs


def upstream_schema(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")


def locate(schema: dict[str, Any], path: str) -> dict[str, Any] | str | None:
    """Our node at an upstream path; "preserved" when a pass-through subtree covers it."""
    node: dict[str, Any] = schema
    for part in re.findall(r"\.[^.\[]+|\[\]", path):
        if node.get("x-kubernetes-preserve-unknown-fields"):
            return "preserved"
        found = node.get("items") if part == "[]" else node.get("properties", {}).get(part[1:])
        if not isinstance(found, dict):
            return None
        node = found
    return node


@pytest.mark.parametrize("kind", list(KIND_INFO))
def test_every_upstream_field_exists_with_its_constraints(kind: str) -> None:
    (crd,) = [c for c in upstream_crds() if c["spec"]["names"]["kind"] == kind]
    ours = crds.openapi_schema(kind)
    missing, changed = [], []
    checked = 0
    for path, up in walk(upstream_schema(crd)):
        if path.startswith(".metadata."):
            continue
        node = locate(ours, path)
        if node is None:
            missing.append(path)
            continue
        if node == "preserved" or not isinstance(node, dict):
            continue
        checked += 1
        for key in KEPT:
            if key not in up or (kind, path, key) in RELAXED:
                continue
            if key == "enum":
                if not set(up["enum"]) <= set(node.get("enum", [])):
                    changed.append(f"{path}: enum {up['enum']} -> {node.get('enum')}")
            elif node.get(key) != up[key]:
                changed.append(f"{path}: {key} {up[key]!r} -> {node.get(key)!r}")
        if up.get("type") and node.get("type") and up["type"] != node["type"]:
            changed.append(f"{path}: type {up['type']} -> {node['type']}")
    assert missing == [], f"{kind}: upstream fields missing from our schema"
    assert changed == [], f"{kind}: upstream constraints not kept"
    assert checked > 10


def test_relaxed_quota_min_items_still_applies_without_budget() -> None:
    spec = crds.openapi_schema("ArksQuota")["properties"]["spec"]
    assert {"required": ["quotas"], "properties": {"quotas": {"minItems": 1}}} in spec["anyOf"]


def test_every_instance_spec_field_of_upstream_exists() -> None:
    (crd,) = [c for c in upstream_crds() if c["spec"]["names"]["kind"] == "ArksApplication"]
    upstream = upstream_schema(crd)["properties"]["spec"]["properties"]["instanceSpec"]
    ours = crds.openapi_schema("ArksApplication")["properties"]["spec"]["properties"]
    assert set(upstream["properties"]) == set(ours["instanceSpec"]["properties"])
    assert len(upstream["properties"]) >= 42


def test_names_and_printer_columns_are_a_superset_of_upstream() -> None:
    for up in upstream_crds():
        kind = up["spec"]["names"]["kind"]
        ours = crds.crd_for(kind)
        assert ours["metadata"]["name"] == up["metadata"]["name"]
        for key in ("kind", "listKind", "plural", "singular"):
            assert ours["spec"]["names"][key] == up["spec"]["names"][key]
        assert set(up["spec"]["names"].get("shortNames", [])) <= set(
            ours["spec"]["names"]["shortNames"]
        )
        assert ours["spec"]["scope"] == up["spec"]["scope"] == "Namespaced"
        (up_version,) = up["spec"]["versions"]
        (version,) = ours["spec"]["versions"]
        assert version["name"] == up_version["name"] == "v1"
        ours_columns = {(c["name"], c["jsonPath"]) for c in version["additionalPrinterColumns"]}
        for column in up_version.get("additionalPrinterColumns", []):
            assert (column["name"], column["jsonPath"]) in ours_columns, (kind, column)
        assert crds.crd_filename(kind) == f"arks.ai_{up['spec']['names']['plural']}.yaml"


def test_gateway_api_cel_rules_are_upstream_verbatim() -> None:
    (crd,) = [c for c in upstream_crds() if c["spec"]["names"]["kind"] == "ArksEndpoint"]
    up = upstream_schema(crd)["properties"]["spec"]["properties"]
    ours = crds.openapi_schema("ArksEndpoint")["properties"]["spec"]["properties"]
    rules = "x-kubernetes-validations"
    path_up = up["matchConfigs"]["items"]["properties"]["path"][rules]
    assert ours["matchConfigs"]["items"]["properties"]["path"][rules] == path_up
    assert ours["routeConfigs"]["items"][rules] == up["routeConfigs"]["items"][rules]
    assert ours["routeConfigs"]["items"][rules] == ours["routeConfigs"]["items"][rules]


def examples() -> list[dict[str, Any]]:
    texts = [shared_path(*UPSTREAM, "quickstart.yaml").read_text()]
    spec_text = shared_path("reference", "arks-upstream-spec.md").read_text()
    section = spec_text.split("\n## 1.", 1)[1].split("\n## 2.", 1)[0]
    texts += [b for b in re.findall(r"```yaml\n(.*?)```", section, flags=re.S) if "kind:" in b]
    texts.append(DISAGGREGATED)
    docs = [d for text in texts for d in yaml.safe_load_all(text) if d]
    assert len(docs) == 10
    return docs


DISAGGREGATED = """
apiVersion: arks.ai/v1
kind: ArksDisaggregatedApplication
metadata: {name: pd, namespace: default}
spec:
  model: {name: qwen-7b}
  router: {}
  prefill: {replicas: 2, runtimeCommonArgs: ["--tp", "1"]}
  decode: {size: 2, instanceSpec: {resources: {limits: {nvidia.com/gpu: "1"}}}}
  podGroupPolicy: {kubeScheduling: {}}
"""


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """What the API server stores: structural defaults applied, top-down."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return value
    if isinstance(value, dict) and "properties" in schema:
        out = dict(value)
        for name, sub in schema["properties"].items():
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            if name in out:
                out[name] = apply_defaults(out[name], sub)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


@pytest.mark.parametrize("index", range(10))
def test_examples_validate_against_our_schema_and_mean_the_same_defaulted(index: int) -> None:
    doc = examples()[index]
    schema = crds.openapi_schema(doc["kind"])
    validator = jsonschema.Draft4Validator(schema)
    validator.validate(doc)
    stored = apply_defaults(doc, schema)
    validator.validate(stored)
    # The model reads the API server's defaulted copy exactly as the raw document.
    assert parse_resource(stored) == parse_resource(doc)
    # What we write back (a dump) is valid for the CRD too.
    validator.validate(dump_resource(parse_resource(doc)))


def test_schema_defaults_agree_with_model_defaults_on_a_minimal_object() -> None:
    minimal = {
        "ArksModel": {"model": "a/b"},
        "ArksApplication": {
            "model": {"name": "m"},
            "autoscaling": {},
            "podGroupPolicy": {"kubeScheduling": {}},
        },
        "ArksDisaggregatedApplication": {"model": {"name": "m"}, "prefill": {}, "decode": {}},
        "ArksEndpoint": {"routeConfigs": [{"name": "s", "port": 80}], "matchConfigs": [{}]},
        "ArksToken": {"token": "t", "qos": [{"arksEndpoint": {}}]},
        "ArksQuota": {"budget": {"limit": "1"}},
    }
    for kind, spec in minimal.items():
        doc = {"apiVersion": "arks.ai/v1", "kind": kind, "metadata": {"name": "x"}, "spec": spec}
        schema = crds.openapi_schema(kind)
        stored = apply_defaults(doc, schema)
        jsonschema.Draft4Validator(schema).validate(stored)
        assert parse_resource(stored) == parse_resource(doc), kind
        # every default the CRD applies is one the model applies too
        dumped = dump_resource(parse_resource(doc))
        for path, value in leaves(stored):
            assert lookup(dumped, path) == value, (kind, path)


def leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict) and value:
        for key, sub in value.items():
            yield from leaves(sub, (*path, key))
    elif isinstance(value, list) and value:
        for index, sub in enumerate(value):
            yield from leaves(sub, (*path, index))
    else:
        yield path, value


def lookup(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value
