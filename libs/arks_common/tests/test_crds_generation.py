"""The generated CRDs: committed copies match the models, the objects are valid
apiextensions.k8s.io/v1 (kubernetes-validate, strict), the schemas are structural, and the
CLI writes and checks them."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from arks_common import crds
from arks_common.resources import KIND_INFO

REPO = Path(__file__).resolve().parents[3]
CRD_DIR = REPO / "deploy" / "crds"


def test_committed_crds_do_not_drift_from_the_models() -> None:
    assert crds.drifted(CRD_DIR) == [], "run `make crds` and commit deploy/crds"
    assert sorted(p.name for p in CRD_DIR.glob("arks.ai_*.yaml")) == sorted(crds.render_all())


def test_generation_is_deterministic() -> None:
    assert crds.render_all() == crds.render_all()
    for kind in KIND_INFO:
        text = crds.render(kind)
        assert text.startswith(crds.HEADER)
        assert yaml.safe_load(text) == crds.crd_for(kind)


@pytest.mark.parametrize("kind", list(KIND_INFO))
def test_crd_objects_pass_kubernetes_validate_strict(kind: str) -> None:
    version = latest_version()
    assert version >= "1.33"
    kubernetes_validate.validate(crds.crd_for(kind), version, strict=True)


def test_kubernetes_validate_catches_a_broken_crd() -> None:
    # Guards the test above against validating nothing.
    broken = crds.crd_for("ArksQuota")
    broken["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["typo"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, latest_version(), strict=True)


def structural_problems(node: dict[str, Any], path: str = "") -> list[str]:
    """Violations of the Kubernetes structural-schema rules the generator must respect."""
    problems: list[str] = []
    if "$ref" in node:
        problems.append(f"{path}: $ref")
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if "type" not in node and not preserve and not node.get("x-kubernetes-int-or-string"):
        problems.append(f"{path}: no type")
    if node.get("additionalProperties") is True or (
        "additionalProperties" in node and "properties" in node
    ):
        problems.append(f"{path}: additionalProperties with properties")
    for key in ("anyOf", "allOf", "oneOf"):
        for branch in node.get(key, []):
            for forbidden in ("type", "description", "default", "additionalProperties", "nullable"):
                if forbidden in branch:
                    problems.append(f"{path}({key}): {forbidden}")
            for name in branch.get("properties", {}):
                if name not in node.get("properties", {}):
                    problems.append(f"{path}({key}): property {name} not in the structural part")
    if "default" in node:
        plain = {k: v for k, v in node.items() if k != "default"}
        errors = list(jsonschema.Draft4Validator(plain).iter_errors(node["default"]))
        problems.extend(f"{path}: default invalid: {e.message}" for e in errors)
    if node.get("x-kubernetes-list-type") == "map":
        item = node["items"]
        for key in node["x-kubernetes-list-map-keys"]:
            if key not in item.get("required", []) and "default" not in item["properties"][key]:
                problems.append(f"{path}: list-map key {key} neither required nor defaulted")
    for name, sub in node.get("properties", {}).items():
        problems.extend(structural_problems(sub, f"{path}.{name}"))
    if isinstance(node.get("items"), dict):
        problems.extend(structural_problems(node["items"], f"{path}[]"))
    if isinstance(node.get("additionalProperties"), dict):
        problems.extend(structural_problems(node["additionalProperties"], f"{path}{{}}"))
    return problems


@pytest.mark.parametrize("kind", list(KIND_INFO))
def test_schemas_are_structural(kind: str) -> None:
    schema = crds.openapi_schema(kind)
    assert structural_problems(schema) == []
    assert schema["properties"]["metadata"] == {"type": "object"}


def test_names_subresources_and_columns() -> None:
    app = crds.crd_for("ArksApplication")
    assert app["metadata"]["name"] == "arksapplications.arks.ai"
    names = app["spec"]["names"]
    assert names == {
        "kind": "ArksApplication",
        "listKind": "ArksApplicationList",
        "plural": "arksapplications",
        "singular": "arksapplication",
        "shortNames": ["arkapp"],
        "categories": ["arks"],
    }
    version = app["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["selector"]["type"] == "string"
    driver = [c for c in version["additionalPrinterColumns"] if c["name"] == "Driver"]
    assert driver[0]["jsonPath"] == ".spec.driver"
    assert "driver" in version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    for kind in KIND_INFO:
        crd = crds.crd_for(kind)
        assert crd["spec"]["scope"] == "Namespaced"
        (version,) = crd["spec"]["versions"]
        assert version["subresources"]["status"] == {}
        assert version["served"]
        assert version["storage"]
        schema = version["schema"]["openAPIV3Schema"]
        assert "observedGeneration" in schema["properties"]["status"]["properties"]
        # every printer column points at a field of the schema
        for column in version["additionalPrinterColumns"]:
            node = schema
            # A filter step (`quotaStatus[?(@.type=="total")]`) selects list items.
            path = re.sub(r"\[\?\(@[^]]*\)\]", "[]", column["jsonPath"])
            for part in path.strip(".").split("."):
                if part == "metadata":
                    break
                node = node["properties"][part.removesuffix("[]")]
                if part.endswith("[]"):
                    node = node["items"]
    endpoint = crds.crd_for("aep")["spec"]["versions"][0]["additionalPrinterColumns"]
    assert {c["name"] for c in endpoint} >= {"Age", "Default Weight", "Strategy"}


def test_unknown_fields_lists_what_the_api_server_would_prune() -> None:
    obj = {
        "apiVersion": "arks.ai/v1",
        "kind": "ArksApplication",
        "metadata": {"name": "a", "whatever": 1},
        "spec": {
            "model": {"name": "m", "namespace": "x"},
            "extraOptions": ["--dtype=half"],
            "instanceSpec": {"replicas": 2, "resources": {"anything": {"goes": 1}}},
        },
        "status": {"phase": "Running", "bogus": True},
    }
    assert crds.unknown_fields(obj) == [
        "spec.model.namespace",
        "spec.extraOptions",
        "spec.instanceSpec.replicas",
        "status.bogus",
    ]


def test_cli_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert crds.main([str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(crds.render_all())
    assert crds.main(["--check", str(tmp_path)]) == 0
    capsys.readouterr()
    quota = tmp_path / "arks.ai_arksquotas.yaml"
    quota.write_text(quota.read_text().replace("minimum: 0", "minimum: 1"))
    (tmp_path / "arks.ai_arkstokens.yaml").unlink()
    (tmp_path / "arks.ai_arksold.yaml").write_text("---\n")
    assert crds.main(["--check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "arks.ai_arksquotas.yaml: differs from the models" in err
    assert "arks.ai_arkstokens.yaml: missing" in err
    assert "arks.ai_arksold.yaml: not generated from any model (stale)" in err


def test_module_entry_point_checks_the_committed_files() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "arks_common.crds", "--check", str(CRD_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_generated_schema_is_not_shared_mutable_state() -> None:
    first = crds.openapi_schema("ArksEndpoint")
    mutated = copy.deepcopy(first)
    first["properties"]["spec"]["properties"].clear()
    assert crds.openapi_schema("ArksEndpoint") == mutated
