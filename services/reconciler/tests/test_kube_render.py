"""The Kubernetes renderers (arks_reconciler.kube.render), golden-tested.

Each case renders an application, a model or an endpoint built inline here and compares
the objects with `goldens/kube/<case>.yaml`. After an intended change, regenerate the
goldens and review the diff:

    ARKS_UPDATE_GOLDENS=1 uv run pytest services/reconciler/tests/test_kube_render.py

Built-in kinds (Deployment, Service, Job, PVC, ServiceAccount, Role, RoleBinding) and the
pod templates inside LeaderWorkerSets and RoleBasedGroups are validated strictly with
kubernetes-validate; the custom kinds are validated against the upstream CRDs (with
their CEL rules) by test_kube_render_conformance.py under `make conformance`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from arks_common import resources
from arks_reconciler import plans
from arks_reconciler.kube import objects
from arks_reconciler.kube.render import (
    driver_problems,
    http_route,
    job_name,
    model_objects,
    model_problems,
    name_problems,
    pvc_name,
    workload_objects,
)
from arks_reconciler.settings import Driver, KubeImages

Obj = dict[str, Any]
GOLDENS = Path(__file__).parent / "goldens" / "kube"
UPDATE = os.environ.get("ARKS_UPDATE_GOLDENS") == "1"
IMAGES = KubeImages()
NS = "llm"
ROUTER = ("arks-system", "arks-router", 8080)

RICH_INSTANCE: Obj = {
    "terminationGracePeriodSeconds": 60,
    "dnsPolicy": "ClusterFirst",
    "automountServiceAccountToken": False,
    "shareProcessNamespace": False,
    "podSecurityContext": {"fsGroup": 1000},
    "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["hub.internal"]}],
    "priorityClassName": "inference",
    "runtimeClassName": "nvidia",
    "enableServiceLinks": False,
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule",
        }
    ],
    "securityContext": {"allowPrivilegeEscalation": False},
    "resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"cpu": "4", "memory": "16Gi"}},
    "labels": {"team": "inference", "arks.ai/work-load-role": "spoofed"},
    "annotations": {"example.com/owner": "ml"},
    "env": [
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ],
    "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}],
    "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory"}}],
    "nodeSelector": {"gpu": "a100"},
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                ]
            }
        }
    },
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "livenessProbe": {"tcpSocket": {"port": 8080}, "failureThreshold": 30},
    "startupProbe": {"httpGet": {"path": "/health", "port": 8080}, "failureThreshold": 120},
    "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
    "serviceAccountName": "engine",
    "initContainers": [{"name": "warm", "image": "busybox:1.36", "command": ["true"]}],
}


def make_model(**spec: Any) -> resources.ArksModel:
    body: Obj = {
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "source": {"huggingface": {"tokenSecretRef": {"name": "hf-token"}}},
        "storage": {
            "pvc": {
                "name": "qwen-store",
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "resources": {"requests": {"storage": "50Gi"}},
                    "storageClassName": "nfs",
                },
            }
        },
    }
    body.update(spec)
    return resources.ArksModel.model_validate(
        {"metadata": {"name": "qwen", "namespace": NS, "uid": "m-1", "generation": 3}, "spec": body}
    )


def app_plan(runtime: str, size: int, **spec: Any) -> plans.WorkloadPlan:
    body: Obj = {
        "replicas": 2,
        "size": size,
        "runtime": runtime,
        "model": {"name": "qwen"},
        "servedModelName": "qwen-7b",
        "runtimeCommonArgs": ["--max-model-len 32768"],
        "instanceSpec": {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
    }
    if runtime in ("vllm", "sglang"):
        body["tensorParallelSize"] = 2
    body.update(spec)
    app = resources.ArksApplication.model_validate(
        {"metadata": {"name": "chat", "namespace": NS, "uid": "a-1", "generation": 1}, "spec": body}
    )
    return plans.application_plan(app, make_model())


def pd_plan(**spec: Any) -> plans.WorkloadPlan:
    body: Obj = {
        "model": {"name": "qwen"},
        "runtimeImagePullSecrets": [{"name": "registry"}],
        "router": {"replicas": 2, "port": 8000, "routerArgs": ["--log-level info"]},
        "prefill": {
            "replicas": 1,
            "size": 2,
            "runtimeCommonArgs": ["--tp 2"],
            "instanceSpec": RICH_INSTANCE,
        },
        "decode": {
            "replicas": 2,
            "leaderCommandOverride": ["/bin/bash", "-c", "exec /opt/decode.sh"],
            "instanceSpec": {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
        },
        "podGroupPolicy": {"kubeScheduling": {"scheduleTimeoutSeconds": 120}},
    }
    body.update(spec)
    app = resources.ArksDisaggregatedApplication.model_validate(
        {"metadata": {"name": "pd", "namespace": NS, "uid": "d-1", "generation": 2}, "spec": body}
    )
    return plans.disaggregated_plan(app, make_model(), entry_role=plans.ROUTER_ROLE)


def make_endpoint(**spec: Any) -> resources.ArksEndpoint:
    body: Obj = {
        "gatewayRef": {"name": "arks-eg", "namespace": "arks-system"},
        "matchConfigs": [
            {"path": {"type": "PathPrefix", "value": "/v1/chat/completions"}},
            {
                "path": {"type": "PathPrefix", "value": "/v1/completions"},
                "headers": [{"name": "x-tenant", "value": "a"}, {"name": "Model", "value": "x"}],
            },
        ],
    }
    body.update(spec)
    return resources.ArksEndpoint.model_validate(
        {"metadata": {"name": "qwen-7b", "namespace": NS}, "spec": body}
    )


STANDALONE: dict[str, tuple[str, int, Obj]] = {
    "vllm": (
        "vllm",
        2,
        {"instanceSpec": RICH_INSTANCE, "runtimeImagePullSecrets": [{"name": "registry"}]},
    ),
    "sglang": (
        "sglang",
        2,
        {"podGroupPolicy": {"volcanoScheduling": {"queue": "gpu", "priorityClassName": "high"}}},
    ),
    "dynamo": ("dynamo", 2, {"runtimeImage": "example.com/dynamo:1"}),
    "sim": ("sim", 1, {"replicas": 3}),
}


def _cases() -> dict[str, Callable[[], list[Obj]]]:
    cases: dict[str, Callable[[], list[Obj]]] = {}
    drivers: tuple[Driver, ...] = ("lws", "rbg", "deployment")
    for runtime, (rt, size, extra) in STANDALONE.items():
        for driver in drivers:
            n = 1 if driver == "deployment" else size

            def render(
                rt: str = rt, n: int = n, extra: Obj = extra, d: Driver = driver
            ) -> list[Obj]:
                return workload_objects(app_plan(rt, n, **extra), driver=d, images=IMAGES)

            cases[f"app-{runtime}-{driver}"] = render
    for pd_driver in ("lws", "rbg"):

        def render_pd(d: Driver = pd_driver) -> list[Obj]:  # type: ignore[assignment]
            spec = {} if d == "rbg" else {"podGroupPolicy": None}
            return workload_objects(pd_plan(**spec), driver=d, images=IMAGES)

        cases[f"pd-sglang-{pd_driver}"] = render_pd

    def render_model() -> list[Obj]:
        model = make_model(
            source={
                "huggingface": {
                    "tokenSecretRef": {"name": "hf-token"},
                    "revision": "v1.0",
                    "allowPatterns": ["*.json", "*.safetensors"],
                    "ignorePatterns": ["*.bin"],
                }
            },
            instanceSpec={
                "env": [{"name": "HF_ENDPOINT", "value": "https://mirror.example.com"}],
                "resources": {"requests": {"cpu": "2", "memory": "4Gi"}},
                "nodeSelector": {"pool": "cpu"},
                "labels": {"team": "ml"},
            },
            imagePullSecrets=[{"name": "registry"}],
        )
        made = model_objects(model, images=IMAGES, uid="m-1")
        return [o for o in (made.pvc, made.job) if o is not None]

    cases["model-pvc-job"] = render_model
    cases["route-cross-namespace"] = lambda: http_route(
        make_endpoint(), router_service=ROUTER, uid="e-1"
    )
    cases["route-same-namespace"] = lambda: http_route(
        make_endpoint(matchConfigs=[]), router_service=(NS, "arks-router", 80), uid="e-1"
    )
    return cases


CASES = _cases()


def dump(objs: list[Obj]) -> str:
    return yaml.safe_dump_all(objs, sort_keys=False, default_flow_style=False, width=100)


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendering_matches_the_golden(case: str) -> None:
    text = dump(CASES[case]())
    path = GOLDENS / f"{case}.yaml"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run with ARKS_UPDATE_GOLDENS=1"
    assert text == path.read_text(), f"{case} differs from its golden (ARKS_UPDATE_GOLDENS=1)"


def test_every_golden_has_a_case() -> None:
    assert {p.stem for p in GOLDENS.glob("*.yaml")} == set(CASES)


# ----------------------------------------------------------------------------- validation

BUILTIN = {
    "Deployment",
    "Service",
    "Job",
    "PersistentVolumeClaim",
    "ServiceAccount",
    "Role",
    "RoleBinding",
}
VERSION = latest_version()


def _pod_templates(obj: Obj) -> list[Obj]:
    spec = obj.get("spec") or {}
    if obj["kind"] == "LeaderWorkerSet":
        lwt = spec["leaderWorkerTemplate"]
        return [t for t in (lwt.get("leaderTemplate"), lwt["workerTemplate"]) if t]
    if obj["kind"] == "RoleBasedGroup":
        return [role["template"] for role in spec["roles"]]
    return [spec["template"]] if "template" in spec else []


def _validate(obj: Obj) -> None:
    kubernetes_validate.validate(obj, VERSION, strict=True)


@pytest.mark.parametrize("case", sorted(CASES))
def test_builtin_objects_and_pod_templates_validate_strictly(case: str) -> None:
    validated = 0
    for obj in CASES[case]():
        if obj["kind"] in BUILTIN:
            _validate(obj)
            validated += 1
        for template in _pod_templates(obj):
            _validate(
                {
                    "apiVersion": "v1",
                    "kind": "PodTemplate",
                    "metadata": {"name": "t"},
                    "template": template,
                }
            )
            validated += 1
    assert validated or case.startswith("route-")


def test_strict_validation_catches_a_wrong_field() -> None:
    service = CASES["app-sim-deployment"]()[-1]
    service["spec"]["selectr"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(service)


# ----------------------------------------------------------------------------- invariants


def _by_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_object_is_managed_owned_and_has_no_status(case: str) -> None:
    for obj in CASES[case]():
        meta = obj["metadata"]
        assert set(obj) <= {
            "apiVersion",
            "kind",
            "metadata",
            "spec",
            "rules",
            "roleRef",
            "subjects",
        }
        assert meta["labels"][objects.MANAGED_BY] == objects.MANAGED_BY_VALUE
        assert meta["name"]
        assert meta["namespace"]
        if obj["kind"] == "ReferenceGrant":
            assert "ownerReferences" not in meta  # cannot cross namespaces
            continue
        (owner,) = meta["ownerReferences"]
        assert owner["controller"] is True
        assert owner["apiVersion"] == "arks.ai/v1"


def test_lws_leaders_and_workers_are_labelled_apart_and_the_service_selects_leaders() -> None:
    plan = app_plan("vllm", 2, instanceSpec=RICH_INSTANCE)
    objs = workload_objects(plan, driver="lws", images=IMAGES)
    assert [o["kind"] for o in objs] == ["LeaderWorkerSet", "Service"]
    lws, service = objs
    assert lws["metadata"]["name"] == "chat"
    spec = lws["spec"]
    assert spec["replicas"] == 2
    assert spec["startupPolicy"] == "LeaderCreated"
    lwt = spec["leaderWorkerTemplate"]
    assert lwt["size"] == 2
    assert lwt["restartPolicy"] == "RecreateGroupOnPodRestart"
    leader, worker = lwt["leaderTemplate"], lwt["workerTemplate"]
    role = plan.roles[0]
    for template, which in ((leader, "leader"), (worker, "worker")):
        labels = template["metadata"]["labels"]
        assert labels[objects.WORKLOAD_ROLE_LABEL] == which  # the user's "spoofed" loses
        assert labels[objects.APPLICATION_LABEL] == "chat"
        assert labels[objects.MODEL_LABEL] == "qwen"
        assert labels[objects.ROLE_LABEL] == "inference"
        assert labels[objects.TEMPLATE_HASH] == role.template.hash
        assert labels["team"] == "inference"
    assert service["metadata"]["name"] == "arks-application-chat"
    assert service["spec"]["selector"] == {
        objects.APPLICATION_LABEL: "chat",
        objects.WORKLOAD_ROLE_LABEL: "leader",
    }
    assert service["spec"]["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 8080, "targetPort": "http"}
    ]
    (engine,) = leader["spec"]["containers"]
    assert engine["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert "--model /models/models/llm/qwen" in engine["command"][2]
    assert "--tensor-parallel-size 2" in engine["command"][2]
    assert engine["command"][2].endswith("--max-model-len 32768")
    (worker_engine,) = worker["spec"]["containers"]
    assert "ports" not in worker_engine
    assert "livenessProbe" not in worker_engine
    assert "worker --ray_address=$(LWS_LEADER_ADDRESS)" in worker_engine["command"][2]


def test_the_whole_instance_spec_reaches_the_pods() -> None:
    secrets = [{"name": "registry"}]
    plan = app_plan("vllm", 1, instanceSpec=RICH_INSTANCE, runtimeImagePullSecrets=secrets)
    (deployment, _) = workload_objects(plan, driver="deployment", images=IMAGES)
    template = deployment["spec"]["template"]
    pod, (engine,) = template["spec"], template["spec"]["containers"]
    instance = RICH_INSTANCE
    for key in (
        "terminationGracePeriodSeconds",
        "dnsPolicy",
        "hostAliases",
        "priorityClassName",
        "runtimeClassName",
        "topologySpreadConstraints",
        "nodeSelector",
        "affinity",
        "tolerations",
        "serviceAccountName",
        "initContainers",
        "automountServiceAccountToken",
        "enableServiceLinks",
        "shareProcessNamespace",
    ):
        assert pod[key] == instance[key], key
    assert pod["securityContext"] == instance["podSecurityContext"]
    for key in ("securityContext", "resources", "livenessProbe", "startupProbe", "lifecycle"):
        assert engine[key] == instance[key], key
    assert engine["readinessProbe"] == {
        "httpGet": {"path": "/health", "port": "http"},
        "periodSeconds": 10,
    }
    assert engine["env"][-2:] == instance["env"]
    assert engine["volumeMounts"] == [
        {"name": "models", "mountPath": "/models", "readOnly": True},
        *instance["volumeMounts"],
    ]
    assert pod["volumes"] == [
        {"name": "models", "persistentVolumeClaim": {"claimName": "qwen-store"}},
        *instance["volumes"],
    ]
    assert pod["imagePullSecrets"] == secrets
    assert template["metadata"]["annotations"] == instance["annotations"]


def test_deployment_driver_gives_single_node_values_to_the_lws_variables() -> None:
    (deployment, _) = workload_objects(app_plan("sglang", 1), driver="deployment", images=IMAGES)
    assert deployment["spec"]["selector"]["matchLabels"] == {
        objects.APPLICATION_LABEL: "chat",
        objects.ROLE_LABEL: "inference",
    }
    (engine,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in engine["env"]}
    assert env["LWS_GROUP_SIZE"] == "1"
    assert env["LWS_WORKER_INDEX"] == "0"
    assert engine["image"] == IMAGES.sglang


def test_sim_runs_the_simulator_without_host_and_with_its_image() -> None:
    (lws, _) = workload_objects(app_plan("sim", 1), driver="lws", images=IMAGES)
    template = lws["spec"]["leaderWorkerTemplate"]
    assert "leaderTemplate" not in template
    (engine,) = template["workerTemplate"]["spec"]["containers"]
    assert engine["image"] == IMAGES.sim
    assert engine["command"][:2] == ["/bin/bash", "-c"]
    assert engine["command"][2].startswith("arks-engine-sim --model /models/models/llm/qwen")
    assert "--host" not in engine["command"][2]
    assert "--port 8080" in engine["command"][2]


def test_rbg_roles_carry_the_replicas_and_patch_the_leader_onto_the_worker() -> None:
    objs = workload_objects(app_plan("sglang", 2), driver="rbg", images=IMAGES)
    (rbg,) = _by_kind(objs, "RoleBasedGroup")
    assert rbg["metadata"]["name"] == "chat"
    (role,) = rbg["spec"]["roles"]
    assert role["name"] == "inference"
    assert role["replicas"] == 2
    assert role["workload"] == {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
    }
    assert role["template"]["metadata"]["labels"][objects.WORKLOAD_ROLE_LABEL] == "worker"
    patch = role["leaderWorkerSet"]["patchLeaderTemplate"]
    assert role["leaderWorkerSet"]["size"] == 2
    assert patch["metadata"] == {"labels": {objects.WORKLOAD_ROLE_LABEL: "leader"}}
    (container,) = patch["spec"]["containers"]
    assert container["name"] == "engine"
    assert "--host 0.0.0.0 --port 8080" in container["command"][2]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_rbg_copies_the_pod_group_policy_and_lws_takes_volcano_annotations() -> None:
    policy = {"volcanoScheduling": {"queue": "gpu", "priorityClassName": "high"}}
    (rbg, _) = workload_objects(
        app_plan("sim", 1, podGroupPolicy=policy), driver="rbg", images=IMAGES
    )
    assert rbg["spec"]["podGroupPolicy"] == policy
    (lws, _) = workload_objects(
        app_plan("sim", 1, podGroupPolicy=policy), driver="lws", images=IMAGES
    )
    assert lws["metadata"]["annotations"] == {"scheduling.volcano.sh/queue-name": "gpu"}
    pod = lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]
    assert pod["schedulerName"] == "volcano"
    assert pod["priorityClassName"] == "high"


def test_disaggregated_lws_renders_router_rbac_roles_and_service() -> None:
    plan = pd_plan(podGroupPolicy=None)
    objs = workload_objects(plan, driver="lws", images=IMAGES)
    assert [(o["kind"], o["metadata"]["name"]) for o in objs] == [
        ("ServiceAccount", "pd-sglang-router"),
        ("Role", "pd-sglang-router"),
        ("RoleBinding", "pd-sglang-router"),
        ("Deployment", "pd-router"),
        ("LeaderWorkerSet", "pd-prefill"),
        ("LeaderWorkerSet", "pd-decode"),
        ("Service", "arks-application-pd"),
    ]
    router = objs[3]
    assert router["spec"]["replicas"] == 2
    pod = router["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "pd-sglang-router"
    (container,) = pod["containers"]
    line = container["command"][2]
    assert line.startswith("python3 -m sglang_router.launch_router --pd-disaggregation")
    assert (
        "--prefill-selector arks.ai/application=pd arks.ai/disaggregation-role=prefill "
        "arks.ai/model=qwen arks.ai/work-load-role=leader --decode-selector" in line
    )
    assert "--service-discovery-namespace llm" in line
    assert "--port 8000" in line
    assert line.endswith(
        "--log-level info --policy cache_aware --prometheus-host 0.0.0.0 --prometheus-port 9090"
    )
    assert container["readinessProbe"]["httpGet"] == {"path": "/readiness", "port": "http"}
    prefill = objs[4]["spec"]["leaderWorkerTemplate"]
    assert (
        "--disaggregation-mode prefill"
        in prefill["leaderTemplate"]["spec"]["containers"][0]["command"][2]
    )
    assert (
        "--disaggregation-mode prefill"
        in prefill["workerTemplate"]["spec"]["containers"][0]["command"][2]
    )
    decode = objs[5]["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]
    assert decode["command"] == ["/bin/bash", "-c", "exec /opt/decode.sh"]
    (generated,) = [e for e in decode["env"] if e["name"] == "ARKS_LEADER_COMMAND"]
    assert "--disaggregation-mode decode" in generated["value"]
    service = objs[-1]
    assert service["spec"]["selector"] == {
        objects.APPLICATION_LABEL: "pd",
        objects.PD_ROLE_LABEL: "router",
    }
    assert service["spec"]["ports"][0]["port"] == 8080
    assert service["spec"]["ports"][0]["targetPort"] == 8000
    binding = objs[2]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "pd-sglang-router", "namespace": NS}
    ]


def test_disaggregated_rbg_holds_router_prefill_and_decode_roles() -> None:
    objs = workload_objects(pd_plan(), driver="rbg", images=IMAGES)
    assert [o["kind"] for o in objs] == [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "RoleBasedGroup",
        "Service",
    ]
    roles = objs[3]["spec"]["roles"]
    assert [(r["name"], r["replicas"], r["workload"]["kind"]) for r in roles] == [
        ("router", 2, "Deployment"),
        ("prefill", 1, "LeaderWorkerSet"),
        ("decode", 2, "LeaderWorkerSet"),
    ]
    assert objs[3]["spec"]["podGroupPolicy"] == {"kubeScheduling": {"scheduleTimeoutSeconds": 120}}


def test_router_with_its_own_service_account_gets_no_rbac() -> None:
    plan = pd_plan(router={"instanceSpec": {"serviceAccountName": "mine"}})
    objs = workload_objects(plan, driver="rbg", images=IMAGES)
    assert [o["kind"] for o in objs] == ["RoleBasedGroup", "Service"]
    router_role = objs[0]["spec"]["roles"][0]
    assert router_role["template"]["spec"]["serviceAccountName"] == "mine"


def test_command_override_of_the_router_exports_the_generated_command() -> None:
    plan = pd_plan(router={"commandOverride": ["/router"], "routerArgs": ["--policy random"]})
    objs = workload_objects(plan, driver="rbg", images=IMAGES)
    container = objs[3]["spec"]["roles"][0]["template"]["spec"]["containers"][0]
    assert container["command"] == ["/router"]
    (env,) = container["env"]
    assert env["name"] == "ARKS_ROUTER_COMMAND"
    assert "--policy random" in env["value"]
    assert "cache_aware" not in env["value"]


# ----------------------------------------------------------------------------- problems


def test_deployment_driver_refuses_multi_pod_replicas() -> None:
    plan = app_plan("vllm", 2)
    problems = driver_problems(plan, "deployment")
    assert problems == [
        "size: 2 pods per replica needs the lws or rbg driver; the deployment driver runs one "
        "pod per replica"
    ]
    assert workload_objects(plan, driver="deployment", images=IMAGES) == []
    assert driver_problems(plan, "lws") == []
    assert driver_problems(plan, "rbg") == []


def test_kube_scheduling_on_lws_and_multi_pod_deployments_are_problems() -> None:
    # A simulator group of 2: the leader serves, the worker holds its place.
    assert driver_problems(app_plan("sim", 2), "lws") == []
    (worker,) = [
        o
        for o in workload_objects(app_plan("sim", 2), driver="lws", images=KubeImages())
        if o["kind"] == "LeaderWorkerSet"
    ]
    command = worker["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]
    assert "sleep infinity" in command["command"][-1]
    assert "size: 2 pods per replica" in driver_problems(app_plan("sim", 2), "deployment")[0]
    policy = {"kubeScheduling": {}}
    (problem,) = driver_problems(app_plan("sim", 1, podGroupPolicy=policy), "lws")
    assert problem.startswith("podGroupPolicy.kubeScheduling needs the rbg driver")
    assert driver_problems(app_plan("sim", 1, podGroupPolicy=policy), "rbg") == []
    pd = driver_problems(pd_plan(), "deployment")
    assert pd == [
        "prefill.size: 2 pods per replica needs the lws or rbg driver; the deployment driver "
        "runs one pod per replica"
    ]


def test_active_deadline_on_long_running_pods_is_a_problem() -> None:
    instance = {"activeDeadlineSeconds": 30}
    (problem,) = driver_problems(app_plan("sim", 1, instanceSpec=instance), "rbg")
    assert problem.startswith("instanceSpec.activeDeadlineSeconds: not allowed")


def test_name_problems_reports_names_over_the_limits() -> None:
    assert name_problems(app_plan("sim", 1)) == []
    app = resources.ArksApplication.model_validate(
        {"metadata": {"name": "a" * 50, "namespace": NS}, "spec": {"model": {"name": "m" * 64}}}
    )
    found = name_problems(app)
    assert len(found) == 2
    assert found[0].startswith(
        "the Service name (arks-application-<application>) 'arks-application-aaa"
    )
    assert "is 67 characters long; Kubernetes allows 63" in found[0]
    assert found[1].startswith("the model name (label arks.ai/model)")
    plan = plans.application_plan(app, make_model())
    assert len(name_problems(plan)) == 1  # the plan's model is `qwen`
    pd = resources.ArksDisaggregatedApplication.model_validate(
        {
            "metadata": {"name": "p" * 60, "namespace": NS},
            "spec": {"model": {"name": "qwen"}, "prefill": {}, "decode": {}},
        }
    )
    assert len(name_problems(pd)) == 4  # Service, and -router, -prefill, -decode workloads
    long_model = resources.ArksModel.model_validate(
        {"metadata": {"name": "q" * 70, "namespace": NS}, "spec": {"model": "x/y"}}
    )
    assert len(name_problems(long_model)) == 1
    assert name_problems(make_endpoint()) == []


# ----------------------------------------------------------------------------- models


def test_model_without_storage_renders_nothing_and_says_why() -> None:
    model = make_model(storage=None)
    assert model_problems(model) == [
        "storage.pvc is required on Kubernetes: the model's files live on a "
        "PersistentVolumeClaim that every engine mounts at /models"
    ]
    made = model_objects(model, images=IMAGES, uid="m-1")
    assert made.pvc is None
    assert made.job is None
    assert pvc_name(model) is None
    assert model_problems(make_model()) == []


def test_model_in_existing_storage_has_a_pvc_and_no_job() -> None:
    model = make_model(
        source=None, storage={"pvc": {"spec": {"accessModes": ["ReadOnlyMany"]}}, "subPath": "qwen"}
    )
    made = model_objects(model, images=IMAGES, uid="m-1")
    assert made.job is None
    assert made.pvc is not None
    assert pvc_name(model) == "qwen" == made.pvc["metadata"]["name"]
    assert made.pvc["spec"] == {"accessModes": ["ReadOnlyMany"]}
    assert made.pvc["metadata"]["labels"][objects.MODEL_LABEL] == "qwen"


def test_download_job_runs_the_model_cache_with_a_failure_policy() -> None:
    made = model_objects(make_model(), images=IMAGES, uid="m-1")
    job = made.job
    assert job is not None
    assert job["metadata"]["name"] == "arks-model-qwen-g3"
    spec = job["spec"]
    assert "backoffLimit" not in spec
    assert "ttlSecondsAfterFinished" not in spec
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["image"] == IMAGES.model_cache
    assert container["command"] == [
        "arks-model-cache",
        "download",
        "Qwen/Qwen2.5-7B-Instruct",
        "--cache-root",
        "/models/.arks-cache",
        "--local-dir",
        "/models/models/llm/qwen",
        "--namespace",
        "llm",
        "--model-name",
        "qwen",
        "--job-id",
        "arks-model-qwen-g3",
    ]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["env"] == [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "HF_TOKEN"}}}
    ]
    assert container["volumeMounts"] == [{"name": "models", "mountPath": "/models"}]
    fail, ignore = spec["podFailurePolicy"]["rules"]
    assert fail["action"] == "FailJob"
    assert fail["onExitCodes"]["values"] == [2, 10, 11, 12, 13]
    assert ignore["action"] == "Ignore"


def test_download_job_names_stay_within_63_characters_and_follow_the_generation() -> None:
    long = "m" * 120
    model = resources.ArksModel.model_validate(
        {"metadata": {"name": long, "namespace": NS, "generation": 12345}, "spec": {"model": "x/y"}}
    )
    name = job_name(model)
    assert len(name) <= 63
    assert name.startswith("arks-model-mmm")
    assert name.endswith("-g12345")
    other = model.model_copy(
        update={"metadata": model.metadata.model_copy(update={"generation": 7})}
    )
    assert job_name(other).endswith("-g7")
    assert job_name(other) != name


# ----------------------------------------------------------------------------- routes


def test_no_gateway_ref_means_no_route() -> None:
    assert http_route(make_endpoint(gatewayRef=None), router_service=ROUTER, uid="e") == []


def test_route_matches_carry_model_and_namespace_headers_and_one_backend() -> None:
    route, grant = http_route(make_endpoint(), router_service=ROUTER, uid="e-1")
    rule = route["spec"]["rules"][0]
    ours = [
        {"type": "Exact", "name": "model", "value": "qwen-7b"},
        {"type": "Exact", "name": "namespace", "value": NS},
    ]
    assert rule["matches"][0]["headers"] == ours
    assert rule["matches"][1]["headers"] == [
        {"type": "Exact", "name": "x-tenant", "value": "a"},
        *ours,
    ]
    assert rule["backendRefs"] == [
        {
            "group": "",
            "kind": "Service",
            "name": "arks-router",
            "port": 8080,
            "namespace": "arks-system",
        }
    ]
    assert route["metadata"]["ownerReferences"][0]["kind"] == "ArksEndpoint"
    assert grant["metadata"]["namespace"] == "arks-system"
    assert grant["spec"]["from"] == [
        {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": NS}
    ]
    assert grant["spec"]["to"] == [{"group": "", "kind": "Service", "name": "arks-router"}]
    (same,) = http_route(make_endpoint(matchConfigs=[]), router_service=(NS, "r", 80), uid="e")
    assert same["spec"]["rules"][0]["matches"] == [{"headers": ours}]
    assert "namespace" not in same["spec"]["rules"][0]["backendRefs"][0]


@pytest.mark.parametrize(
    "plan",
    [
        pytest.param(app_plan("vllm", 2, instanceSpec=RICH_INSTANCE), id="vllm"),
        pytest.param(pd_plan(podGroupPolicy=None), id="pd"),
    ],
)
def test_rbg_leader_patch_gives_the_lws_leader_template(plan: plans.WorkloadPlan) -> None:
    # The RBG controller strategic-merges patchLeaderTemplate onto the role template; the
    # result must be the leader template the lws driver renders (the dev cluster's merge).
    from arks_devcluster.strategic import strategic_merge

    (rbg,) = _by_kind(workload_objects(plan, driver="rbg", images=IMAGES), "RoleBasedGroup")
    lws_objects = _by_kind(workload_objects(plan, driver="lws", images=IMAGES), "LeaderWorkerSet")
    checked = 0
    for role, lws in zip(
        [r for r in rbg["spec"]["roles"] if r["name"] != "router"], lws_objects, strict=True
    ):
        lwt = lws["spec"]["leaderWorkerTemplate"]
        if "leaderTemplate" not in lwt:
            assert role["template"] == lwt["workerTemplate"]
            continue
        patch = role["leaderWorkerSet"]["patchLeaderTemplate"]
        assert strategic_merge(role["template"], patch) == lwt["leaderTemplate"]
        assert role["template"] == lwt["workerTemplate"]
        checked += 1
    assert checked == 1


def test_leader_patch_deletes_what_only_the_worker_has() -> None:
    from arks_devcluster.strategic import strategic_merge

    plan = pd_plan(
        prefill={
            "size": 2,
            "workerCommandOverride": ["/w"],
            "instanceSpec": {"env": [{"name": "A", "value": "1"}]},
        }
    )
    (rbg,) = _by_kind(workload_objects(plan, driver="rbg", images=IMAGES), "RoleBasedGroup")
    prefill = rbg["spec"]["roles"][1]
    worker = prefill["template"]["spec"]["containers"][0]
    assert worker["command"] == ["/w"]
    assert [e["name"] for e in worker["env"]] == ["LWS_WORKER_INDEX", "A", "ARKS_WORKER_COMMAND"]
    leader = strategic_merge(prefill["template"], prefill["leaderWorkerSet"]["patchLeaderTemplate"])
    engine = leader["spec"]["containers"][0]
    assert [e["name"] for e in engine["env"]] == ["LWS_WORKER_INDEX", "A"]
    assert "--disaggregation-mode prefill" in engine["command"][2]
