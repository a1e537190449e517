"""Loading, defaults, round trips and helpers of arks_common.resources.

Tests of upstream material (`<repo>/../shared`, see `arks_common.testing.reference`) are
marked `conformance`: `make conformance` runs them and fails when the material is missing.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from arks_common.resources import (
    KINDS,
    PLURALS,
    SHORT_NAMES,
    ApplicationConditionType,
    ArksApplication,
    ArksDisaggregatedApplication,
    ArksEndpoint,
    ArksModel,
    ArksQuota,
    ArksToken,
    Condition,
    ObjectMeta,
    ResourceError,
    UnknownKindError,
    dump_resource,
    dump_resources_yaml,
    hash_token,
    load_resources,
    parse_resource,
    resolve_kind,
    set_condition,
)
from arks_common.testing.reference import shared_path


def spec_section1_examples() -> list[str]:
    """The complete `arks.ai/v1` YAML examples of section 1 of the upstream spec."""
    text = shared_path("reference", "arks-upstream-spec.md").read_text()
    section = text.split("\n## 1.", 1)[1].split("\n## 2.", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    return [b for b in blocks if "apiVersion: arks.ai/v1" in b]


# Written from spec section 1.6 (upstream ships an empty sample for this kind).
DISAGGREGATED_EXAMPLE = """
apiVersion: arks.ai/v1
kind: ArksDisaggregatedApplication
metadata: {name: pd-qwen, namespace: default}
spec:
  runtime: sglang
  model: {name: qwen-7b}
  servedModelName: qwen-7b
  router:
    replicas: 1
    int32: 8080
    metricPort: 9090
    routerArgs: ["--policy", "round_robin"]
  prefill:
    replicas: 2
    size: 1
    runtimeCommonArgs: ["--tp", "1"]
    instanceSpec:
      resources: {limits: {nvidia.com/gpu: "1"}}
  decode:
    replicas: 1
    size: 2
    runtimeCommonArgs: ["--tp", "2"]
    instanceSpec:
      resources: {limits: {nvidia.com/gpu: "1"}}
  podGroupPolicy:
    kubeScheduling: {}
"""

MODEL_EXAMPLE = """
apiVersion: arks.ai/v1
kind: ArksModel
metadata: {name: qwen-7b, namespace: team-a}
spec:
  model: Qwen/Qwen2.5-7B-Instruct
  source:
    huggingface:
      tokenSecretRef: {name: hf-token}
      revision: v1.0
      allowPatterns: ["*.safetensors", "*.json"]
  storage:
    pvc:
      spec: {accessModes: [ReadWriteMany], resources: {requests: {storage: 20Gi}}}
    subPath: qwen/7b
  preload: true
  pin: true
"""


def all_examples_text() -> str:
    quickstart = shared_path("upstream", "arks", "quickstart.yaml").read_text()
    return "\n---\n".join(
        [quickstart, *spec_section1_examples(), DISAGGREGATED_EXAMPLE, MODEL_EXAMPLE]
    )


@pytest.mark.conformance
def test_quickstart_loads_every_document() -> None:
    resources = load_resources(shared_path("upstream", "arks", "quickstart.yaml").read_text())
    assert [r.kind for r in resources] == [
        "ArksModel",
        "ArksApplication",
        "ArksEndpoint",
        "ArksQuota",
        "ArksToken",
    ]
    model, app, endpoint, quota, token = resources
    assert isinstance(model, ArksModel)
    assert model.spec.storage is not None
    assert model.spec.storage.pvc is not None
    assert model.spec.storage.pvc.spec["storageClassName"] == "local-path"
    assert isinstance(app, ArksApplication)
    assert (app.spec.replicas, app.spec.size, app.spec.tensor_parallel_size) == (1, 2, 2)
    assert app.metadata.namespace == "default"  # omitted in the quickstart
    assert app.spec.instance_spec.resources == {
        "limits": {"nvidia.com/gpu": "1"},
        "requests": {"nvidia.com/gpu": "1"},
    }
    assert isinstance(endpoint, ArksEndpoint)
    assert endpoint.spec.default_weight == 5
    assert [m.path.value for m in endpoint.spec.match_configs] == [
        "/v1/completions",
        "/v1/chat/completions",
    ]
    assert isinstance(quota, ArksQuota)
    assert quota.spec.limit("total") == 600000
    assert isinstance(token, ArksToken)
    grant = token.grant_for("qwen-7b")
    assert grant is not None
    assert grant.limit("tpm") == 40000
    assert grant.quota is not None
    assert grant.quota.name == "basic-quota"


@pytest.mark.conformance
def test_spec_section1_examples_load() -> None:
    examples = spec_section1_examples()
    kinds = sorted(r.kind for text in examples for r in load_resources(text))
    assert kinds == ["ArksApplication", "ArksEndpoint", "ArksQuota", "ArksToken"]


def test_stale_upstream_fields_are_ignored_like_pruning() -> None:
    # Upstream docs still use `extraOptions` and `instanceSpec.replicas`: pruned, no error.
    (app,) = load_resources(
        """
apiVersion: arks.ai/v1
kind: ArksApplication
metadata: {name: old}
spec:
  model: {name: m}
  extraOptions: ["--dtype=half"]
  instanceSpec: {replicas: 3}
"""
    )
    dumped = dump_resource(app)
    assert "extraOptions" not in dumped["spec"]
    assert dumped["spec"]["instanceSpec"] == {}


@pytest.mark.conformance
def test_round_trip_is_stable_for_every_example() -> None:
    resources = load_resources(all_examples_text())
    assert len(resources) == 11
    for resource in resources:
        once = dump_resource(resource)
        again = parse_resource(once)
        assert again == resource
        assert dump_resource(again) == once
    assert load_resources(dump_resources_yaml(resources)) == resources


def test_application_defaults() -> None:
    app = parse_resource(
        {
            "apiVersion": "arks.ai/v1",
            "kind": "ArksApplication",
            "metadata": {"name": "a"},
            "spec": {"model": {"name": "qwen"}},
        }
    )
    assert isinstance(app, ArksApplication)
    spec = app.spec
    assert spec.replicas == 1  # upstream leaves 0: a known bug
    assert (spec.size, spec.runtime, spec.driver) == (1, "vllm", None)
    assert spec.runtime_common_args == []
    assert spec.instance_spec.resources is None
    assert app.served_model_name_or_default() == "qwen"
    assert (
        app.spec.model_copy(update={"served_model_name": "pub"}).served_model_name_or_default()
        == "pub"
    )
    zero = ArksApplication.model_validate(
        {"metadata": {"name": "a"}, "spec": {"model": {"name": "m"}, "size": 0, "replicas": 0}}
    )
    assert (zero.spec.size, zero.spec.replicas) == (1, 0)  # size 0 means 1, as upstream


def test_disaggregated_defaults_and_int32_port() -> None:
    app = ArksDisaggregatedApplication.model_validate(
        {"metadata": {"name": "pd"}, "spec": {"model": {"name": "m"}, "prefill": {}, "decode": {}}}
    )
    spec = app.spec
    assert spec.runtime == "sglang"
    assert (spec.router.replicas, spec.router.port, spec.router.metric_port) == (1, 8080, 9090)
    assert (spec.prefill.replicas, spec.prefill.size) == (1, 1)
    assert (spec.decode.replicas, spec.decode.size) == (1, 1)
    router = dump_resource(app)["spec"]["router"]
    assert router["int32"] == 8080
    assert "port" not in router
    for key in ("int32", "port"):
        loaded = ArksDisaggregatedApplication.model_validate(
            {
                "metadata": {"name": "pd"},
                "spec": {
                    "model": {"name": "m"},
                    "prefill": {},
                    "decode": {},
                    "router": {key: 9000},
                },
            }
        )
        assert loaded.spec.router.port == 9000
    (example,) = load_resources(DISAGGREGATED_EXAMPLE)
    assert isinstance(example, ArksDisaggregatedApplication)
    policy = example.spec.pod_group_policy
    assert policy is not None
    assert policy.kube_scheduling is not None
    assert policy.kube_scheduling.schedule_timeout_seconds == 60


def test_endpoint_defaults() -> None:
    endpoint = ArksEndpoint.model_validate(
        {
            "metadata": {"name": "qwen-7b"},
            "spec": {"gatewayRef": {"name": "eg"}, "routeConfigs": [{"name": "svc", "port": 80}]},
        }
    )
    spec = endpoint.spec
    assert spec.default_weight == 1
    assert [(m.path.type, m.path.value) for m in spec.match_configs] == [("PathPrefix", "/")]
    backend = spec.route_configs[0]
    assert (backend.kind, backend.group, backend.weight, backend.is_service) == (
        "Service",
        "",
        1,
        True,
    )
    assert spec.gateway_ref is not None
    assert (spec.gateway_ref.group, spec.gateway_ref.kind) == (
        "gateway.networking.k8s.io",
        "Gateway",
    )
    assert (spec.strategy, spec.session_header) == (None, "x-session-id")
    assert endpoint.model_name == "qwen-7b"
    # matchConfigs given without a path get the Gateway API default path.
    matched = ArksEndpoint.model_validate(
        {"metadata": {"name": "e"}, "spec": {"matchConfigs": [{"method": "POST"}]}}
    )
    assert matched.spec.match_configs[0].path.value == "/"


def test_model_paths_and_extensions() -> None:
    (model,) = load_resources(MODEL_EXAMPLE)
    assert isinstance(model, ArksModel)
    assert model.model_path() == "/models/qwen/7b"
    source = model.spec.source
    assert source is not None
    assert source.huggingface is not None
    assert source.huggingface.revision_or_default() == "v1.0"
    assert (model.spec.preload, model.spec.pin) == (True, True)
    assert not model.in_existing_storage
    bare = ArksModel.model_validate(
        {"metadata": {"name": "m", "namespace": "ns"}, "spec": {"model": "a/b"}}
    )
    assert bare.model_path() == "/models/models/ns/m"
    assert bare.model_path(root="/var/cache/arks") == "/var/cache/arks/models/ns/m"
    assert bare.in_existing_storage
    assert bare.spec.storage is None
    local = ArksModel.model_validate(
        {
            "metadata": {"name": "m"},
            "spec": {"model": "a/b", "storage": {"localPath": "/data/qwen"}},
        }
    )
    assert local.model_path() == "/data/qwen"
    hf = ArksModel.model_validate(
        {"metadata": {"name": "m"}, "spec": {"model": "a/b", "source": {"huggingface": {}}}}
    )
    assert hf.spec.source is not None
    assert hf.spec.source.huggingface is not None
    assert hf.spec.source.huggingface.revision_or_default() == "main"


def test_token_grants_hash_and_secrecy() -> None:
    token = ArksToken.model_validate(
        {
            "metadata": {"name": "t"},
            "spec": {
                "token": "sk-secret-value",
                "qos": [
                    {"arksEndpoint": {"name": "a"}, "rateLimits": [{"type": "rpm", "value": 5}]},
                    {"arksEndpoint": {"name": "b"}},
                    {"arksEndpoint": {"name": "a"}, "rateLimits": [{"type": "rpm", "value": 9}]},
                ],
            },
        }
    )
    grants = token.spec.grants()
    assert list(grants) == ["a", "b"]
    assert grants["a"].limit("rpm") == 5  # first entry wins, as upstream
    assert grants["b"].limit("rpm") is None
    assert token.grant_for("c") is None
    assert "sk-secret-value" not in repr(token)
    assert "sk-secret-value" not in str(token.spec)
    assert dump_resource(token)["spec"]["token"] == "sk-secret-value"
    assert token.spec.token_hash() == hash_token("sk-secret-value")
    assert re.fullmatch(r"[0-9a-f]{64}", hash_token("x"))


def test_kind_registry_and_resolution() -> None:
    assert set(KINDS) == {
        "ArksModel",
        "ArksApplication",
        "ArksDisaggregatedApplication",
        "ArksEndpoint",
        "ArksToken",
        "ArksQuota",
    }
    assert PLURALS["ArksDisaggregatedApplication"] == "arksdisaggregatedapplications"
    assert SHORT_NAMES == {
        "ArksModel": ("am",),
        "ArksApplication": ("arkapp",),
        "ArksDisaggregatedApplication": ("arkdapp",),
        "ArksEndpoint": ("aep",),
        "ArksToken": ("atk",),
        "ArksQuota": ("aq",),
    }
    for name in ("ArksModel", "arksmodel", "ARKSMODELS", "am", "arksmodels.arks.ai", " Am "):
        assert resolve_kind(name) is ArksModel
    assert resolve_kind("arkdapp") is ArksDisaggregatedApplication
    assert resolve_kind("atk") is ArksToken
    with pytest.raises(UnknownKindError, match=r"'pods' is not an arks\.ai/v1 resource"):
        resolve_kind("pods")


def test_metadata_and_timestamps() -> None:
    meta = ObjectMeta.model_validate(
        {
            "name": "x",
            "creationTimestamp": "2026-01-14T10:00:00.123456+02:00",
            "managedFields": [{"manager": "kubectl"}],
            "labels": {},
        }
    )
    assert meta.namespace == "default"
    assert meta.creation_timestamp == datetime(2026, 1, 14, 8, 0, 0, tzinfo=UTC)
    dumped = meta.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped["creationTimestamp"] == "2026-01-14T08:00:00Z"
    assert dumped["managedFields"] == [{"manager": "kubectl"}]  # extra metadata is kept
    assert "labels" not in dumped  # empty collections are omitted, as kubectl does


def test_set_condition_moves_transition_time_only_on_change() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    t1 = datetime(2026, 1, 2, tzinfo=UTC)
    ready = ApplicationConditionType.READY
    conditions = set_condition([], Condition(type="Precheck", status="True"), now=t0)
    conditions = set_condition(conditions, Condition(type=ready, status="False"), now=t0)
    same = set_condition(conditions, Condition(type=ready, status="False", reason="Again"), now=t1)
    assert [c.type for c in same] == ["Precheck", "Ready"]
    assert same[1].last_transition_time == t0
    assert same[1].reason == "Again"
    flipped = set_condition(same, Condition(type=ready, status="True"), now=t1)
    assert flipped[1].last_transition_time == t1
    assert [c.type for c in flipped] == ["Precheck", "Ready"]


def test_load_resources_reports_document_numbers() -> None:
    text = """
apiVersion: arks.ai/v1
kind: ArksQuota
metadata: {name: ok}
spec: {quotas: [{type: total, value: 1}]}
---
---
apiVersion: arks.ai/v1
kind: ArksQuota
metadata: {name: broken}
spec: {quotas: [{type: tokens, value: 1}]}
---
- just
- a list
"""
    with pytest.raises(ResourceError) as info:
        load_resources(text)
    message = str(info.value)
    assert "document 3 (ArksQuota broken): spec.quotas[0].type: Input should be" in message
    assert "(got 'tokens')" in message
    assert "document 4: expected a mapping" in message
    assert [p.document for p in info.value.problems] == [3, 4]
    assert info.value.retryable is False
    with pytest.raises(ResourceError, match="invalid YAML"):
        load_resources("a: [unclosed")
    with pytest.raises(ResourceError, match=r"kind: 'Pod' is not an arks.ai/v1 resource"):
        load_resources("apiVersion: arks.ai/v1\nkind: Pod\nmetadata: {name: p}\n")
    with pytest.raises(ResourceError, match=r"apiVersion: must be 'arks.ai/v1' \(got 'v1'\)"):
        parse_resource({"apiVersion": "v1", "kind": "ArksModel"})
    assert load_resources("---\n---\n") == []
