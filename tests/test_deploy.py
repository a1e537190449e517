"""deploy/ installs a working Arks: what `kubectl kustomize` renders is valid, secure and
complete, and an API server admits it.

Renders (the real kubectl's kustomize, offline): `deploy/` (CRDs + base), `deploy/base`,
`deploy/overlays/dev` and `deploy/overlays/monitoring`. Every object validates: built-in
kinds with kubernetes_validate (strict, its newest bundled Kubernetes version), arks.ai
objects with our CRDs, monitoring.coreos.com objects with the schema written down below.
The RBAC granted is exactly the table below (every rule used by a code path of the
reconciler or the accountant), every pod meets Pod Security "restricted", every service
is probed on its health port, the images the reconciler renders follow the pins, and
the dashboard's queries name metrics the services export. Finally the dev cluster's API
server (in process) admits both installs with `kubectl apply --dry-run=server`, and with
RBAC on, a reconciler holding only deploy/'s grants (a token of its ServiceAccount) does
its whole job unrefused.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S_VERSION = kubernetes_validate.latest_version()
"""The newest Kubernetes version whose schemas kubernetes_validate bundles."""

RENDERS = {
    "deploy": DEPLOY,
    "base": DEPLOY / "base",
    "dev": DEPLOY / "overlays" / "dev",
    "monitoring": DEPLOY / "overlays" / "monitoring",
}
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
SERVICES = ("arks-reconciler", "arks-router", "arks-accountant", "arks-model-cache")


def _kubectl() -> str:
    from arks_devcluster.testing import kubectl_binary

    return kubectl_binary()


@functools.cache
def _render(name: str) -> tuple[dict[str, Any], ...]:
    done = subprocess.run(
        [_kubectl(), "kustomize", str(RENDERS[name])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def _documents() -> list[dict[str, Any]]:
    """deploy/base as kustomize renders it (the services, no CRDs)."""
    return list(_render("base"))


def _of(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _pod_specs(docs: tuple[dict[str, Any], ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    for d in docs:
        if d["kind"] in WORKLOAD_KINDS:
            yield d["metadata"]["name"], d["spec"]["template"]["spec"]


def _env(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container.get("env", [])}


def _kustomization(name: str) -> dict[str, Any]:
    return yaml.safe_load((RENDERS[name] / "kustomization.yaml").read_text())


# ----------------------------------------------------------------------------- schemas
# The Prometheus Operator's monitoring.coreos.com/v1 CRDs are not installed with Arks, so
# their schema is written down here: the fields of ServiceMonitor and PodMonitor that
# deploy/components/monitoring uses, with their upstream types (prometheus-operator's
# monitoring.coreos.com_servicemonitors.yaml / _podmonitors.yaml), unknown fields refused.
_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}  # fmt: skip  # noqa: E501
_LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key", "operator"],
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
_NAMESPACE_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "any": {"type": "boolean"},
        "matchNames": {"type": "array", "items": {"type": "string"}},
    },
}
_ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "port": {"type": "string"},
        "path": {"type": "string"},
        "scheme": {"enum": ["http", "https"]},
        "interval": _DURATION,
        "scrapeTimeout": _DURATION,
    },
}


def _monitor_schema(kind: str, endpoints: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": {
                "type": "object",
                "required": ["name", "namespace"],
                "properties": {
                    "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                    "namespace": {"type": "string"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
            "spec": {
                "type": "object",
                "required": ["selector", endpoints],
                "additionalProperties": False,
                "properties": {
                    "selector": _LABEL_SELECTOR,
                    "namespaceSelector": _NAMESPACE_SELECTOR,
                    "jobLabel": {"type": "string"},
                    endpoints: {"type": "array", "minItems": 1, "items": _ENDPOINT},
                },
            },
        },
    }


MONITORING_SCHEMAS = {
    "ServiceMonitor": _monitor_schema("ServiceMonitor", "endpoints"),
    "PodMonitor": _monitor_schema("PodMonitor", "podMetricsEndpoints"),
}


@functools.cache
def _arks_crd_schemas() -> dict[str, dict[str, Any]]:
    schemas = {}
    for path in sorted((DEPLOY / "crds").glob("arks.ai_*.yaml")):
        crd = yaml.safe_load(path.read_text())
        (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
        schemas[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return schemas


def validate(doc: dict[str, Any]) -> None:
    """Validate one object with the schema of its kind (see the module docstring)."""
    group = doc["apiVersion"].rpartition("/")[0]
    if group == "arks.ai":
        from arks_common import crds

        jsonschema.Draft7Validator(_arks_crd_schemas()[doc["kind"]]).validate(doc)
        assert crds.unknown_fields(doc) == [], f"{doc['kind']}: fields the API would prune"
    elif group == "monitoring.coreos.com":
        jsonschema.Draft7Validator(MONITORING_SCHEMAS[doc["kind"]]).validate(doc)
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("name", list(RENDERS))
def test_every_rendered_object_validates_against_its_schema(name: str) -> None:
    docs = _render(name)
    assert docs
    for doc in docs:
        try:
            validate(doc)
        except Exception as exc:
            raise AssertionError(f"{name}: {doc['kind']} {doc['metadata']['name']}: {exc}") from exc


def test_the_renders_hold_what_each_promises() -> None:
    kinds = {name: {d["kind"] for d in _render(name)} for name in RENDERS}
    assert "CustomResourceDefinition" in kinds["deploy"]
    assert len(_of(_render("deploy"), "CustomResourceDefinition")) == 6
    for name in ("base", "dev", "monitoring"):
        assert "CustomResourceDefinition" not in kinds[name], name
    # The Prometheus Operator's kinds only in the monitoring overlay (their CRDs may be
    # missing from a cluster).
    for name in ("deploy", "base", "dev"):
        assert not kinds[name] & set(MONITORING_SCHEMAS), name
    assert set(MONITORING_SCHEMAS) <= kinds["monitoring"]
    assert {d["apiVersion"].split("/")[0] for d in _render("deploy")} <= {
        "v1",
        "apps",
        "policy",
        "rbac.authorization.k8s.io",
        "apiextensions.k8s.io",
    }
    for name in RENDERS:
        for doc in _render(name):
            if doc["kind"] not in ("Namespace", "CustomResourceDefinition") and doc["kind"] not in (
                "ClusterRole",
                "ClusterRoleBinding",
            ):
                assert doc["metadata"]["namespace"] == "arks-system", (name, doc["kind"])


def test_kustomizations_reference_existing_files() -> None:
    for kustomization in DEPLOY.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text())
        paths = [*spec.get("resources", []), *spec.get("components", [])]
        paths += [p["path"] for p in spec.get("patches", []) if "path" in p]
        paths += [f for g in spec.get("configMapGenerator", []) for f in g.get("files", [])]
        for resource in paths:
            assert (kustomization.parent / resource).exists(), f"{kustomization}: {resource}"


# ----------------------------------------------------------------------------- RBAC
ARKS_PLURALS = (
    "arksmodels",
    "arksapplications",
    "arksdisaggregatedapplications",
    "arksendpoints",
    "arkstokens",
    "arksquotas",
)
OWNED = (
    ("apps", "deployments"),
    ("leaderworkerset.x-k8s.io", "leaderworkersets"),
    ("workloads.x-k8s.io", "rolebasedgroups"),
    ("", "services"),
    ("", "serviceaccounts"),
    ("", "persistentvolumeclaims"),
    ("batch", "jobs"),
    ("rbac.authorization.k8s.io", "roles"),
    ("rbac.authorization.k8s.io", "rolebindings"),
    ("gateway.networking.k8s.io", "httproutes"),
    ("gateway.networking.k8s.io", "referencegrants"),
)
Grant = tuple[str, str, frozenset[str]]


def _grants(*rows: tuple[str, str, str]) -> set[Grant]:
    return {(group, resource, frozenset(verbs.split())) for group, resource, verbs in rows}


# What the code does against the API, one row per (apiGroup, resource): docs/kubernetes.md
# says which code path uses each.
RECONCILER_CLUSTER_RULES = _grants(
    # informers (list + watch, get on a cache miss); finalizers by JSON merge patch
    *[("arks.ai", plural, "get list watch patch") for plural in ARKS_PLURALS],
    # status: GET then PUT with the resourceVersion read
    *[("arks.ai", f"{plural}/status", "get update") for plural in ARKS_PLURALS],
    # rendered objects: server-side apply (PATCH; create when missing), watched by the
    # managed-by label, stale ones deleted
    *[(group, plural, "get list watch create patch delete") for group, plural in OWNED],
    # replica states and IPs; also what the sglang_router's Role grants (escalation check)
    ("", "pods", "get list watch"),
    # upstream Arks' RoleBasedGroupSets: watched, deleted once replaced (adoption)
    ("workloads.x-k8s.io", "rolebasedgroupsets", "get list watch delete"),
    ("", "events", "create patch"),
)
RECONCILER_LEASE_RULES = _grants(("coordination.k8s.io", "leases", "get create update"))
ACCOUNTANT_CLUSTER_RULES = _grants(
    ("arks.ai", "arksquotas", "get"), ("arks.ai", "arksquotas/status", "get update")
)


def _granted(role: dict[str, Any]) -> set[Grant]:
    per_resource: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule  # no resourceNames/URLs
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), f"wildcard in {rule}"
                    per_resource.setdefault((group, resource), set()).add(verb)
    return {(g, r, frozenset(verbs)) for (g, r), verbs in per_resource.items()}


def test_the_rbac_table_is_what_the_reconciler_code_touches() -> None:
    """The table's kinds are kinds.py's: the six arks.ai kinds and every owned kind
    (pods and upstream's RoleBasedGroupSets are watched and never applied)."""
    from arks_reconciler.kube import kinds

    assert {k.plural for k in kinds.ARKS.values()} == set(ARKS_PLURALS)
    owned_in_code = {(k.group, k.plural) for k in kinds.OWNED}
    watched_only = {("", "pods"), ("workloads.x-k8s.io", "rolebasedgroupsets")}
    assert owned_in_code == {*OWNED, *watched_only}
    assert kinds.CRD not in kinds.OWNED  # CRDs are never read: no rule for them


@pytest.mark.parametrize("name", ["deploy", "dev", "monitoring"])
def test_rbac_grants_exactly_what_the_code_needs(name: str) -> None:
    docs = _render(name)
    cluster_roles, roles = _of(docs, "ClusterRole"), _of(docs, "Role")
    assert set(cluster_roles) == {"arks-reconciler", "arks-accountant"}
    assert set(roles) == {"arks-reconciler-leader-election"}
    assert _granted(cluster_roles["arks-reconciler"]) == RECONCILER_CLUSTER_RULES
    assert _granted(cluster_roles["arks-accountant"]) == ACCOUNTANT_CLUSTER_RULES
    assert _granted(roles["arks-reconciler-leader-election"]) == RECONCILER_LEASE_RULES
    bindings = [*_of(docs, "ClusterRoleBinding").values(), *_of(docs, "RoleBinding").values()]
    bound = {}
    for binding in bindings:
        ((subject),) = binding["subjects"]
        assert subject["kind"] == "ServiceAccount"
        assert subject["namespace"] == "arks-system"
        bound[(binding["roleRef"]["kind"], binding["roleRef"]["name"])] = subject["name"]
        if binding["kind"] == "RoleBinding":
            assert binding["roleRef"]["kind"] == "Role"  # the Lease: own namespace only
    assert bound == {
        ("ClusterRole", "arks-reconciler"): "arks-reconciler",
        ("ClusterRole", "arks-accountant"): "arks-accountant",
        ("Role", "arks-reconciler-leader-election"): "arks-reconciler",
    }


@pytest.mark.parametrize("name", ["deploy", "dev"])
def test_only_the_services_that_talk_to_the_api_get_a_token(name: str) -> None:
    docs = _render(name)
    accounts = _of(docs, "ServiceAccount")
    talking = {"arks-reconciler", "arks-accountant"}
    for workload, spec in _pod_specs(docs):
        account = spec["serviceAccountName"]
        assert account == workload, "one ServiceAccount per service"
        assert accounts[account]["metadata"]["namespace"] == "arks-system"
        mounts = spec.get("automountServiceAccountToken", True)
        assert mounts is (workload in talking), workload
        if workload not in talking:
            assert accounts[account]["automountServiceAccountToken"] is False, workload


# ----------------------------------------------------------------------------- pods
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


@pytest.mark.parametrize("name", list(RENDERS))
def test_every_pod_meets_pod_security_restricted(name: str) -> None:
    docs = _render(name)
    (namespace,) = _of(docs, "Namespace").values()
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    workloads = list(_pod_specs(docs))
    assert len(workloads) == 6
    for workload, spec in workloads:
        pod = spec.get("securityContext", {})
        for field in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(field), (workload, field)
        assert pod.get("runAsNonRoot") is True, workload
        assert pod.get("runAsUser", 1) != 0, workload
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", workload
        for volume in spec.get("volumes", []):
            assert set(volume) - {"name"} <= RESTRICTED_VOLUMES, (workload, volume)
        for container in spec.get("initContainers", []) + spec["containers"]:
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False, workload
            assert ctx["capabilities"] == {"drop": ["ALL"]}, workload
            assert ctx["readOnlyRootFilesystem"] is True, workload
            assert not ctx.get("privileged"), workload
            assert ctx.get("runAsUser", 1) != 0, workload
            assert "ports" not in container or all("hostPort" not in p for p in container["ports"])


@pytest.mark.parametrize("name", ["deploy", "dev"])
def test_every_container_has_requests_limits_and_probes(name: str) -> None:
    for workload, spec in _pod_specs(_render(name)):
        for container in spec["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), workload
            assert "memory" in resources["limits"], workload
            assert "livenessProbe" in container, workload
            assert "readinessProbe" in container, workload


def test_every_service_has_probes_on_its_health_port() -> None:
    deployments = _of(_documents(), "Deployment")
    assert set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        health = int(env["ARKS_HEALTH__PORT"])
        assert env["ARKS_HEALTH__HOST"] == "0.0.0.0", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        # (the reconciler's /readyz is ready on a standby too: tests/.../test_kube_convergence)
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        for probe in ("livenessProbe", "readinessProbe"):
            assert ports[container[probe]["httpGet"]["port"]] == health, name


@pytest.mark.parametrize("name", ["deploy", "dev"])
def test_every_workload_has_a_disruption_budget(name: str) -> None:
    docs = _render(name)
    budgets = list(_of(docs, "PodDisruptionBudget").values())
    for workload in (d for d in docs if d["kind"] in WORKLOAD_KINDS):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        matching = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(matching) == 1, workload["metadata"]["name"]
        (budget,) = matching
        if workload["spec"]["replicas"] > 1:
            assert budget["spec"]["minAvailable"] == 1, workload["metadata"]["name"]


def test_the_read_only_services_write_only_to_their_volumes() -> None:
    deployments = _of(_documents(), "Deployment")
    for name, deployment in deployments.items():
        spec = deployment["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], name
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["HOME"] == "/tmp", name
    router = deployments["arks-router"]["spec"]["template"]["spec"]
    (container,) = router["containers"]
    spool = {e["name"]: e.get("value") for e in container["env"]}["ARKS_USAGE__SPOOL_DIR"]
    assert spool in {m["mountPath"] for m in container["volumeMounts"]}


# ----------------------------------------------------------------------------- settings
def _pins(name: str) -> dict[str, str]:
    return {
        i["name"]: f"{i.get('newName', i['name'])}:{i['newTag']}"
        for i in _kustomization(name)["images"]
    }


@pytest.mark.parametrize("name", ["deploy", "dev", "monitoring"])
def test_images_follow_the_pins_and_the_reconciler_renders_the_pinned_ones(name: str) -> None:
    pins = _pins(name)
    assert set(pins) == {
        "arks/reconciler",
        "arks/router",
        "arks/accountant",
        "arks/model-cache",
        "arks/engine-sim",
    }
    deployments = _of(_render(name), "Deployment")
    for service in SERVICES:
        (container,) = deployments[service]["spec"]["template"]["spec"]["containers"]
        assert container["image"] == pins[f"arks/{service.removeprefix('arks-')}"]
    env = {k: e.get("value") for k, e in _env(deployments["arks-reconciler"]).items()}
    assert env["ARKS_KUBERNETES__IMAGES__SIM"] == pins["arks/engine-sim"]
    assert env["ARKS_KUBERNETES__IMAGES__MODEL_CACHE"] == pins["arks/model-cache"]
    assert _pins(name) == _pins("deploy"), "one set of pins (change them together)"


def test_the_reconciler_runs_the_kubernetes_platform_with_its_settings() -> None:
    from arks_reconciler.settings import ReconcilerSettings

    deployments = _of(_documents(), "Deployment")
    env = _env(deployments["arks-reconciler"])
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    values = {k: e["value"] for k, e in env.items() if "value" in e and k.startswith("ARKS_")}
    settings = ReconcilerSettings.model_validate(_nested(values))
    assert settings.platform == "kubernetes"
    assert settings.kubernetes.namespace is None  # every namespace: ClusterRoles
    assert settings.kubernetes.router_service == "arks-system/arks-router:80"
    assert settings.kubernetes.lease.name == "arks-reconciler"
    routers = _of(_documents(), "Service")["arks-router"]["spec"]["ports"]
    assert [p["port"] for p in routers] == [80]

    accountant = _env(deployments["arks-accountant"])
    assert accountant["ARKS_STATUS__WRITER"]["value"] == "kubernetes"


def _nested(env: dict[str, str]) -> dict[str, Any]:
    """`ARKS_A__B=v` as {"a": {"b": "v"}} (pydantic-settings' nesting)."""
    out: dict[str, Any] = {}
    for key, value in env.items():
        parts = key.removeprefix("ARKS_").lower().split("__")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def test_the_dev_overlay_is_single_node_with_two_reconcilers_and_no_rwx() -> None:
    docs = _render("dev")
    deployments, sets = _of(docs, "Deployment"), _of(docs, "StatefulSet")
    assert deployments["arks-reconciler"]["spec"]["replicas"] == 2
    budget = _of(docs, "PodDisruptionBudget")["arks-reconciler"]
    assert budget["spec"]["minAvailable"] == 1
    assert sets["nats"]["spec"]["replicas"] == sets["valkey"]["spec"]["replicas"] == 1
    claims = [c["spec"] for c in _of(docs, "PersistentVolumeClaim").values()]
    claims += [t["spec"] for s in sets.values() for t in s["spec"]["volumeClaimTemplates"]]
    assert claims
    assert all(c["accessModes"] == ["ReadWriteOnce"] for c in claims)
    # the brokers keep the users of their Secrets
    assert "-c" in sets["nats"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--aclfile" in sets["valkey"]["spec"]["template"]["spec"]["containers"][0]["args"]


# ----------------------------------------------------------------------------- credentials
def test_every_service_gets_its_own_credentials_from_a_secret() -> None:
    from arks_cli import credentials
    from arks_common import access

    deployments = [d for d in _documents() if d["kind"] == "Deployment"]
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

    statefulsets = {d["metadata"]["name"]: d for d in _documents() if d["kind"] == "StatefulSet"}
    expected = {"nats": credentials.NATS_AUTH_SECRET, "valkey": credentials.VALKEY_ACL_SECRET}
    for name, secret in expected.items():
        spec = statefulsets[name]["spec"]["template"]["spec"]
        secrets = [v["secret"] for v in spec["volumes"] if "secret" in v]
        assert {s["secretName"] for s in secrets} == {secret}
        # readable by the broker's non-root user through its group (fsGroup)
        assert all(s["defaultMode"] & 0o040 for s in secrets), name
        assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsGroup"]
    assert "-c" in statefulsets["nats"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert (
        "--aclfile" in statefulsets["valkey"]["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    # Secrets are made by the operator (`arks credentials kubernetes`), never committed.
    for name in RENDERS:
        assert not [d for d in _render(name) if d["kind"] == "Secret"], name


def test_generated_secrets_are_the_ones_the_manifests_name() -> None:
    from arks_cli import credentials
    from arks_common.access import Credentials

    secrets = credentials.kubernetes_secrets(Credentials.generate())
    for doc in secrets:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    names = {d["metadata"]["name"] for d in secrets}
    referenced = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for d in _documents()
        if d["kind"] == "Deployment"
        for e in _env(d).values()
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert referenced <= names
    assert {credentials.NATS_AUTH_SECRET, credentials.VALKEY_ACL_SECRET} <= names
    assert {d["metadata"]["namespace"] for d in secrets} == {"arks-system"}


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
    documents = _documents()
    router = _of(documents, "Deployment")["arks-router"]
    (container,) = router["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == int(env["ARKS_HTTP__PORT"])
    assert ports["admin"] == int(env["ARKS_HEALTH__PORT"]) != ports["http"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "admin"
    service = _of(documents, "Service")["arks-router"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


# ----------------------------------------------------------------------------- monitoring
def test_monitors_scrape_each_services_admin_port_and_the_engines() -> None:
    docs = _render("monitoring")
    monitors = _of(docs, "ServiceMonitor")
    services = _of(docs, "Service")
    deployments = _of(docs, "Deployment")
    assert set(monitors) == set(SERVICES)
    for name, monitor in monitors.items():
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics"
        selected = [
            s
            for s in services.values()
            if monitor["spec"]["selector"]["matchLabels"].items()
            <= s["metadata"].get("labels", {}).items()
        ]
        assert [s["metadata"]["name"] for s in selected] == [f"{name}-metrics"]
        (port,) = selected[0]["spec"]["ports"]
        assert port["name"] == endpoint["port"]
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        health = {e["name"]: e.get("value") for e in container["env"]}["ARKS_HEALTH__PORT"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports[port["targetPort"]] == int(health), name
    (engines,) = _of(docs, "PodMonitor").values()
    from arks_reconciler.commands import KUBE_ENGINE_PORT
    from arks_reconciler.kube import objects
    from arks_reconciler.kube.render.engines import HTTP_PORT

    labels = engines["spec"]["selector"]["matchLabels"]
    assert labels == {objects.MANAGED_BY: objects.MANAGED_BY_VALUE, objects.WORKLOAD_ROLE_LABEL: objects.LEADER}  # fmt: skip  # noqa: E501
    (endpoint,) = engines["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == HTTP_PORT["name"]
    assert HTTP_PORT["containerPort"] == KUBE_ENGINE_PORT


def _exported_metric_names() -> set[str]:
    """Every sample name the services and engines export: the arks_* families declared in
    services/*/src/**/metrics*.py (their Prometheus sample names), and the engine
    simulator's vllm:* / sglang:* families as it exposes them."""
    from prometheus_client import CollectorRegistry

    from arks_engine_sim.metrics import CacheInfo, EngineStats, SimCollector

    suffixes = {
        "Counter": ("_total",),
        "Gauge": ("",),
        "Histogram": ("_bucket", "_sum", "_count"),
        "Summary": ("_sum", "_count", ""),
    }
    declared = re.compile(r"\b(Counter|Gauge|Histogram|Summary)(?:MetricFamily)?\(\s*\"(arks_[a-z0-9_:]+)\"")  # fmt: skip  # noqa: E501
    names: set[str] = set()
    for path in ROOT.glob("services/*/src/**/metrics*.py"):
        for kind, family in declared.findall(path.read_text()):
            names |= {family.removesuffix("_total") + s for s in suffixes[kind]}

    class Gauges:
        num_running = num_waiting = kv_used_tokens = 0
        kv_usage = 0.0

    registry = CollectorRegistry()
    registry.register(
        SimCollector(
            EngineStats(max_model_len=4096),
            Gauges(),
            model_name="m",
            style="both",
            cache=CacheInfo(block_size=16, num_gpu_blocks=100, enable_prefix_caching=True),
        )
    )
    names |= {s.name for family in registry.collect() for s in family.samples}
    return names


def _dashboard() -> dict[str, Any]:
    return json.loads((DEPLOY / "base" / "dashboards" / "arks.json").read_text())


def test_the_dashboard_queries_only_metrics_the_services_export() -> None:
    exported = _exported_metric_names()
    assert {"arks_router_requests_total", "vllm:num_requests_running"} <= exported
    exprs = [t["expr"] for p in _dashboard()["panels"] if p["type"] != "row" for t in p["targets"]]
    assert len(exprs) > 20
    used = set()
    for expr in exprs:
        metrics = re.findall(r"\b((?:arks_|vllm:|sglang:)[a-z0-9_:]+)", expr)
        assert metrics, expr
        used |= set(metrics)
    assert used - exported == set()
    # router, accountant, reconciler and engines are all on it
    for prefix in ("arks_router_", "arks_accountant_", "arks_reconciler_", "vllm:", "sglang:"):
        assert any(m.startswith(prefix) for m in used), prefix


def test_the_dashboard_ships_as_a_configmap() -> None:
    for name in ("deploy", "dev"):
        (config_map,) = _of(_render(name), "ConfigMap").values()
        assert config_map["metadata"]["name"] == "arks-grafana-dashboard"
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(config_map["data"]["arks.json"]) == _dashboard()
    ids = [p["id"] for p in _dashboard()["panels"]]
    assert len(ids) == len(set(ids))


# ----------------------------------------------------------------------------- API server
async def test_the_dev_clusters_api_server_admits_every_object(tmp_path: Path) -> None:
    """`kubectl apply --dry-run=server` of deploy/ and deploy/overlays/dev against the dev
    cluster's API server (in process): every object is admitted (schemas, names,
    references), nothing is written."""
    from arks_devcluster import FakeKubeApi, serve
    from arks_devcluster.cluster import cluster_crds
    from arks_devcluster.testing import Kubectl

    async with serve(FakeKubeApi(crds=cluster_crds())) as (_, url):
        kubectl = Kubectl.for_server(tmp_path, url, "token")
        # Namespaced objects need their namespace (a dry run creates none).
        await kubectl.check("apply", "-f", str(DEPLOY / "base" / "namespace.yaml"))
        for name in ("deploy", "dev"):
            done = await kubectl.check("apply", "-k", str(RENDERS[name]), "--dry-run=server")
            lines = [line for line in done.out.splitlines() if line]
            assert len(lines) == len(_render(name)), done.out
            assert all(line.endswith("(server dry run)") for line in lines), done.out
        written = await kubectl.check(
            "get", "deploy,sts,pdb,cm,svc,pvc", "-n", "arks-system", "-o", "name"
        )
        assert written.out.strip() == ""
        roles = await kubectl.check("get", "clusterroles", "-o", "name")
        assert "arks-reconciler" not in roles.out


async def test_the_reconciler_does_its_work_with_exactly_deploys_rbac(
    nats_server: Any, tmp_path: Path
) -> None:
    """The dev cluster with RBAC on, deploy/overlays/dev applied by the admin, and the
    reconciler logged in with a token of its ServiceAccount (Lease in arks-system, as in
    a pod): an application with an endpoint behind a Gateway gets its workload, Service,
    PVC, HTTPRoute and ReferenceGrant, statuses, finalizers and Events; deleting it
    removes what it owned. No request is refused."""
    from arks_devcluster import FakeKubeApi
    from arks_devcluster.cluster import cluster_crds
    from arks_devcluster.kubeconfig import write_kubeconfig
    from arks_devcluster.server import serving
    from arks_devcluster.testing import Kubectl
    from arks_reconciler.kube import testing as kt
    from arks_reconciler.settings import KubernetesPlatformSettings, LeaseSettings
    from arks_reconciler.testing import InProcessReconciler, eventually, make_settings

    admin_token = "admin-secret"
    api = FakeKubeApi(rbac=True, admin_token=admin_token, crds=cluster_crds())
    async with serving(api, tls=True) as running:
        (tmp_path / "admin").mkdir()
        admin = Kubectl.for_server(
            tmp_path / "admin", running.url, admin_token, ca_pem=running.ca_pem
        )
        await admin.check("apply", "-f", str(DEPLOY / "base" / "namespace.yaml"))
        await admin.check("apply", "-k", str(RENDERS["dev"]))
        token = api.token_for("arks-system", "arks-reconciler")
        kubeconfig = write_kubeconfig(
            tmp_path / "reconciler.kubeconfig", running.url, token, ca_pem=running.ca_pem
        )
        settings = make_settings(nats_server.url, tmp_path / "data")
        kube = KubernetesPlatformSettings(
            kubeconfig=str(kubeconfig),
            lease=LeaseSettings(
                namespace="arks-system", duration=3, renew_deadline=2, retry_period=0.5
            ),
        )
        reconciler = InProcessReconciler(
            settings.model_copy(update={"platform": "kubernetes", "kubernetes": kube})
        )
        await reconciler.start()
        try:
            gateway = {"name": "arks-eg", "namespace": "arks-system"}
            endpoint = kt.endpoint()
            endpoint["spec"]["gatewayRef"] = gateway
            for obj in (kt.model(), kt.application(replicas=1), endpoint):
                api.create(obj)

            def owned(group: str, plural: str, namespace: str = kt.NS) -> list[dict[str, Any]]:
                rtype = api.registry.resource(group, plural)
                assert rtype is not None, plural
                return [
                    o
                    for o in api.store.items(rtype, namespace)
                    if o["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") == "arks"
                ]

            async def rendered() -> bool:
                app = api.get("arks.ai/v1", "arksapplications", kt.NS, "app-qwen") or {}
                events = api.store.items(api.registry.resource("", "events"), kt.NS)
                return bool(
                    owned("leaderworkerset.x-k8s.io", "leaderworkersets")
                    and owned("", "services")
                    and owned("", "persistentvolumeclaims")
                    and owned("gateway.networking.k8s.io", "httproutes")
                    and owned("gateway.networking.k8s.io", "referencegrants", "arks-system")
                    and app.get("metadata", {}).get("finalizers")
                    and app.get("status")
                    and events
                )

            await eventually(rendered, within=30, what="the application's objects")
            lease = api.get("coordination.k8s.io/v1", "leases", "arks-system", "arks-reconciler")
            assert lease["spec"]["holderIdentity"]

            await admin.check("delete", "arkapp", "app-qwen", "-n", kt.NS, "--wait=false")

            async def cleaned() -> bool:
                gone = api.get("arks.ai/v1", "arksapplications", kt.NS, "app-qwen") is None
                return gone and not owned("leaderworkerset.x-k8s.io", "leaderworkersets")

            await eventually(cleaned, within=30, what="the application's objects deleted")
            async with httpx.AsyncClient(timeout=10) as http:
                metrics = (await http.get(f"{reconciler.health_url}/metrics")).text
        finally:
            await reconciler.stop()
    refused = re.findall(r'arks_reconciler_kube_requests_total\{[^}]*code="(40[13])"', metrics)
    assert refused == [], "the reconciler was refused requests its code makes"
    assert "arks_reconciler_kube_requests_total" in metrics
