"""Every manifest under deploy/ is a valid Kubernetes object and kustomize can find it."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.33"


def _documents() -> list[tuple[Path, dict]]:
    docs = []
    for path in sorted((DEPLOY / "base").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path, doc))
    return docs


@pytest.mark.parametrize(
    ("path", "doc"), _documents(), ids=lambda v: v.name if isinstance(v, Path) else v["kind"]
)
def test_manifest_validates_against_the_kubernetes_schema(path: Path, doc: dict) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kustomizations_reference_existing_files() -> None:
    for kustomization in DEPLOY.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text())
        for resource in spec["resources"]:
            assert (kustomization.parent / resource).exists(), f"{kustomization}: {resource}"


def test_every_service_has_probes_on_health_endpoints() -> None:
    deployments = [d for _, d in _documents() if d["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == {
        "arks-reconciler",
        "arks-router",
        "arks-accountant",
        "arks-model-cache",
    }
    for deployment in deployments:
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_the_routers_public_port_serves_no_health_or_metrics() -> None:
    documents = [d for _, d in _documents()]
    (router,) = [
        d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "arks-router"
    ]
    (container,) = router["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == int(env["ARKS_HTTP__PORT"])
    assert ports["admin"] == int(env["ARKS_HEALTH__PORT"]) != ports["http"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "admin"
    (service,) = [
        d for d in documents if d["kind"] == "Service" and d["metadata"]["name"] == "arks-router"
    ]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
