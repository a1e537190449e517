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


def _env(deployment: dict) -> dict[str, dict]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container.get("env", [])}


def test_every_service_gets_its_own_credentials_from_a_secret() -> None:
    from arks_cli import credentials
    from arks_common import access

    deployments = [d for _, d in _documents() if d["kind"] == "Deployment"]
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        user = access.SERVICE_USERS[name]
        env = _env(deployment)
        assert env["ARKS_NATS__USER"]["value"] == user
        assert env["ARKS_NATS__INBOX_PREFIX"]["value"] == access.inbox_prefix(user)
        passwords = ["ARKS_NATS__PASSWORD"]
        if user in access.VALKEY_ROLES:
            assert env["ARKS_REDIS__USERNAME"]["value"] == user
            passwords.append("ARKS_REDIS__PASSWORD")
        else:
            assert not [k for k in env if k.startswith("ARKS_REDIS__")], name
        for variable in passwords:
            assert "value" not in env[variable], f"{name}: {variable} in plain text"
            ref = env[variable]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == credentials.credentials_secret(user), name


def test_the_brokers_require_users_from_secrets_and_no_password_is_committed() -> None:
    from arks_cli import credentials

    statefulsets = {d["metadata"]["name"]: d for _, d in _documents() if d["kind"] == "StatefulSet"}
    expected = {"nats": credentials.NATS_AUTH_SECRET, "valkey": credentials.VALKEY_ACL_SECRET}
    for name, secret in expected.items():
        spec = statefulsets[name]["spec"]["template"]["spec"]
        assert {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v} == {secret}
    assert "-c" in statefulsets["nats"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert (
        "--aclfile" in statefulsets["valkey"]["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    # Secrets are made by the operator (`arks credentials kubernetes`), never committed.
    assert not [path for path, d in _documents() if d["kind"] == "Secret"]


def test_generated_secrets_are_the_ones_the_manifests_name() -> None:
    from arks_cli import credentials
    from arks_common.access import Credentials

    secrets = credentials.kubernetes_secrets(Credentials.generate())
    for doc in secrets:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    names = {d["metadata"]["name"] for d in secrets}
    referenced = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for _, d in _documents()
        if d["kind"] == "Deployment"
        for e in _env(d).values()
        if "valueFrom" in e
    }
    assert referenced <= names
    assert {credentials.NATS_AUTH_SECRET, credentials.VALKEY_ACL_SECRET} <= names


def test_compose_services_read_their_own_credentials_files(tmp_path: Path) -> None:
    from arks_cli import credentials
    from arks_common import access
    from arks_common.access import Credentials

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    text = (ROOT / "docker-compose.yml").read_text()
    assert "PASSWORD:" not in text  # no password is written into the file
    services = compose["services"]
    for service, user in access.SERVICE_USERS.items():
        assert services[service.removeprefix("arks-")]["env_file"] == [f".secrets/{user}.env"]
    assert services["nats"]["ports"] == ["127.0.0.1:4222:4222"]
    assert "-c" in services["nats"]["command"]
    assert "--aclfile" in services["valkey"]["command"]
    written = credentials.write_compose_secrets(Credentials.generate(), tmp_path / ".secrets")
    made = {p.relative_to(tmp_path).as_posix() for p in written}
    wanted = {s["file"] for s in compose["secrets"].values()}
    wanted |= {f for s in services.values() for f in s.get("env_file", [])}
    assert wanted <= made
    assert all(p.stat().st_mode & 0o077 == 0 for p in written)


def test_the_routers_public_port_serves_no_health_or_metrics() -> None:
    documents = [d for _, d in _documents()]
    (router,) = [
        d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "arks-router"
    ]
    (container,) = router["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == int(env["ARKS_HTTP__PORT"])
    assert ports["admin"] == int(env["ARKS_HEALTH__PORT"]) != ports["http"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "admin"
    (service,) = [
        d for d in documents if d["kind"] == "Service" and d["metadata"]["name"] == "arks-router"
    ]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
