"""RoleBasedGroups and RoleBasedGroupSets: one workload per role of the kind it asks
for, role dependencies, status; only while their CRDs (and LWS's, for LWS roles) are
installed. The test plays the kubelet."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from arks_common.testing.reference import shared_path
from arks_devcluster import FakeKubeApi
from arks_devcluster.bundled_crds import bundled_crds
from arks_devcluster.controllers.testing import (
    eventually,
    kubelet,
    mark_running,
    pods,
    running_controllers,
)

P = "rolebasedgroup.workloads.x-k8s.io/"


def crds(*groups: str) -> list[dict]:
    return [c for c in bundled_crds() if c["spec"]["group"] in groups]


def role(name: str, *, kind: str | None = None, replicas: int = 1, **extra: Any) -> dict:
    spec: dict[str, Any] = {
        "name": name,
        "replicas": replicas,
        "template": {
            "spec": {
                "containers": [
                    {"name": "main", "image": f"{name}:1", "env": [{"name": "Z", "value": "z"}]}
                ]
            }
        },
        **extra,
    }
    if kind:
        group = "leaderworkerset.x-k8s.io/v1" if kind == "LeaderWorkerSet" else "apps/v1"
        spec["workload"] = {"apiVersion": group, "kind": kind}
    return spec


def rbg(*roles: dict, name: str = "grp") -> dict:
    return {
        "apiVersion": "workloads.x-k8s.io/v1alpha1",
        "kind": "RoleBasedGroup",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"roles": list(roles)},
    }


def get(api: FakeKubeApi, group: str, plural: str, name: str) -> dict | None:
    return kubelet(api).get(group, plural, "default", name)


def the_rbg(api: FakeKubeApi, name: str = "grp") -> dict:
    found = get(api, "workloads.x-k8s.io", "rolebasedgroups", name)
    assert found is not None
    return found


def start_all(api: FakeKubeApi) -> None:
    for pod in pods(api):
        if not pod.get("status"):
            mark_running(api, pod)


def warnings(api: FakeKubeApi) -> set[tuple[str, str]]:
    return {
        (e["reason"], e["message"])
        for e in kubelet(api).list("", "events", "default")
        if e["type"] == "Warning"
    }


async def test_roles_start_in_dependency_order_and_report_their_status() -> None:
    api = FakeKubeApi(crds=crds("workloads.x-k8s.io", "leaderworkerset.x-k8s.io"))
    decode = role(
        "decode",
        kind="LeaderWorkerSet",
        dependencies=["prefill"],
        leaderWorkerSet={
            "size": 2,
            "patchLeaderTemplate": {
                "spec": {"containers": [{"name": "main", "command": ["lead"]}]}
            },
        },
    )
    async with running_controllers(api):
        api.create(
            rbg(
                role("router", kind="Deployment"),
                role("prefill", replicas=2, dependencies=["router"]),
                decode,
            )
        )
        await eventually(lambda: get(api, "apps", "deployments", "grp-router"))
        assert get(api, "apps", "statefulsets", "grp-prefill") is None, "waits for the router"
        assert ("DependencyNotMet", "dependencies not met for role 'prefill'") in warnings(api)
        router = get(api, "apps", "deployments", "grp-router")
        assert router is not None
        labels = router["metadata"]["labels"]
        assert (labels[P + "name"], labels[P + "role"]) == ("grp", "router")
        assert P + "role-revision-hash-router" in labels
        assert len(labels[P + "group-unique-key"]) == 40
        assert router["metadata"]["annotations"][P + "role-size"] == "1"
        assert router["metadata"]["ownerReferences"][0]["kind"] == "RoleBasedGroup"
        assert router["spec"]["selector"]["matchLabels"] == {
            k: labels[k] for k in (P + "name", P + "role", P + "group-unique-key")
        }
        container = router["spec"]["template"]["spec"]["containers"][0]
        assert [e["name"] for e in container["env"]] == ["GROUP_NAME", "ROLE_NAME", "Z"]
        await eventually(lambda: len(pods(api)) == 1)
        start_all(api)
        prefill = await eventually(lambda: get(api, "apps", "statefulsets", "grp-prefill"))
        assert prefill["spec"]["serviceName"] == "s-grp-prefill"
        env = prefill["spec"]["template"]["spec"]["containers"][0]["env"]
        assert env[1] == {
            "name": "ROLE_INDEX",
            "valueFrom": {
                "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
            },
        }
        service = get(api, "", "services", "s-grp-prefill")
        assert service is not None
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["selector"] == {P + "name": "grp", P + "role": "prefill"}
        await eventually(lambda: len(pods(api)) == 3)
        start_all(api)
        lws = await eventually(
            lambda: get(api, "leaderworkerset.x-k8s.io", "leaderworkersets", "grp-decode")
        )
        template = lws["spec"]["leaderWorkerTemplate"]
        assert template["size"] == 2
        assert template["restartPolicy"] == "RecreateGroupOnPodRestart"
        assert template["leaderTemplate"]["spec"]["containers"][0]["command"] == ["lead"]
        assert "command" not in template["workerTemplate"]["spec"]["containers"][0]
        await eventually(lambda: len(pods(api)) == 5)
        start_all(api)

        def ready() -> bool:
            status = the_rbg(api).get("status") or {}
            return any(
                c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
            )

        await eventually(ready)
        status = the_rbg(api)["status"]
        assert status["roleStatuses"] == [
            {"name": "router", "replicas": 1, "readyReplicas": 1},
            {"name": "prefill", "replicas": 2, "readyReplicas": 2},
            {"name": "decode", "replicas": 1, "readyReplicas": 1},
        ]
        assert [(c["reason"], c["message"]) for c in status["conditions"]] == [
            ("AllRolesReady", "All roles are ready")
        ]
        updated = the_rbg(api)
        updated["spec"]["roles"] = updated["spec"]["roles"][:1]
        kubelet(api).update(updated)
        await eventually(lambda: get(api, "apps", "statefulsets", "grp-prefill") is None)
        await eventually(
            lambda: get(api, "leaderworkerset.x-k8s.io", "leaderworkersets", "grp-decode") is None
        )


async def test_a_leader_worker_set_role_waits_for_the_lws_crd_and_cycles_are_refused() -> None:
    api = FakeKubeApi(crds=crds("workloads.x-k8s.io"))
    async with running_controllers(api):
        api.create(rbg(role("engine", kind="LeaderWorkerSet", leaderWorkerSet={"size": 1})))
        await eventually(lambda: any(r == "FailedReconcileWorkload" for r, _ in warnings(api)))
        for crd in crds("leaderworkerset.x-k8s.io"):
            api.create(crd)
        await eventually(
            lambda: get(api, "leaderworkerset.x-k8s.io", "leaderworkersets", "grp-engine")
        )
        await eventually(lambda: len(pods(api)) == 1)
        api.create(rbg(role("a", dependencies=["b"]), role("b", dependencies=["a"]), name="loop"))
        await eventually(
            lambda: ("InvalidRoleDependency", "cycle detected for role 'a'") in warnings(api)
        )
        assert get(api, "apps", "statefulsets", "loop-a") is None


async def test_a_role_based_group_set_keeps_its_groups() -> None:
    api = FakeKubeApi(crds=crds("workloads.x-k8s.io"))
    rbgs = {
        "apiVersion": "workloads.x-k8s.io/v1alpha1",
        "kind": "RoleBasedGroupSet",
        "metadata": {"name": "app", "namespace": "default"},
        "spec": {"replicas": 2, "template": {"roles": [role("inference")]}},
    }
    async with running_controllers(api):
        api.create(rbgs)
        await eventually(lambda: len(pods(api)) == 2)
        groups = kubelet(api).list("workloads.x-k8s.io", "rolebasedgroups", "default")
        assert [(g["metadata"]["name"], g["metadata"]["labels"]) for g in groups] == [
            (
                f"app-{i}",
                {
                    "rolebasedgroupset.workloads.x-k8s.io/name": "app",
                    "rolebasedgroupset.workloads.x-k8s.io/rbg-index": str(i),
                },
            )
            for i in (0, 1)
        ]
        start_all(api)

        def set_status() -> dict:
            found = get(api, "workloads.x-k8s.io", "rolebasedgroupsets", "app")
            return (found or {}).get("status") or {}

        await eventually(lambda: set_status().get("readyReplicas") == 2)
        assert [(c["type"], c["status"], c["reason"]) for c in set_status()["conditions"]] == [
            ("Ready", "True", "AllReplicasReady")
        ]
        scaled = get(api, "workloads.x-k8s.io", "rolebasedgroupsets", "app")
        assert scaled is not None
        scaled["spec"]["replicas"] = 1
        kubelet(api).update(scaled)
        await eventually(lambda: len(pods(api)) == 1 and set_status().get("replicas") == 1)


@pytest.mark.conformance
async def test_the_upstream_crds_drive_the_same_roles() -> None:
    upstream = [
        yaml.safe_load(
            shared_path("upstream", "rbg", "workloads.x-k8s.io_rolebasedgroups.yaml").read_text()
        ),
        yaml.safe_load(
            shared_path(
                "upstream", "lws", "leaderworkerset.x-k8s.io_leaderworkersets.yaml"
            ).read_text()
        ),
    ]
    api = FakeKubeApi(crds=upstream)
    async with running_controllers(api):
        created = api.create(
            rbg(role("inference", kind="LeaderWorkerSet", leaderWorkerSet={"size": 2}))
        )
        assert created["spec"]["roles"][0]["workload"]["kind"] == "LeaderWorkerSet"
        await eventually(lambda: len(pods(api)) == 2)
        made = get(api, "leaderworkerset.x-k8s.io", "leaderworkersets", "grp-inference")
        assert made is not None
        assert made["spec"]["startupPolicy"] == "LeaderCreated", "the LWS CRD's defaults"
        start_all(api)
        await eventually(
            lambda: (
                (the_rbg(api).get("status") or {}).get("roleStatuses")
                == [{"name": "inference", "replicas": 1, "readyReplicas": 1}]
            )
        )
