"""LeaderWorkerSets: leader and worker StatefulSets, the pod webhook's labels and env,
group readiness, rolling updates and group restarts; only while the CRD is installed.
The test plays the kubelet."""

from __future__ import annotations

import copy

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

P = "leaderworkerset.sigs.k8s.io/"


def lws_crd() -> dict:
    return next(c for c in bundled_crds() if c["spec"]["group"] == "leaderworkerset.x-k8s.io")


def lws(replicas: int = 2, size: int = 3, image: str = "engine:1") -> dict:
    def template(role: str) -> dict:
        return {
            "metadata": {"labels": {"role": role}},
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": image,
                        "env": [
                            {"name": "LWS_GROUP_SIZE", "value": "x"},
                            {"name": "MODE", "value": role},
                        ],
                    }
                ]
            },
        }

    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": "vllm", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "leaderWorkerTemplate": {
                "size": size,
                "leaderTemplate": template("leader"),
                "workerTemplate": template("worker"),
            },
        },
    }


def get(api: FakeKubeApi, group: str, plural: str, name: str) -> dict | None:
    return kubelet(api).get(group, plural, "default", name)


def the_lws(api: FakeKubeApi) -> dict:
    found = get(api, "leaderworkerset.x-k8s.io", "leaderworkersets", "vllm")
    assert found is not None
    return found


def by_name(api: FakeKubeApi) -> dict[str, dict]:
    return {p["metadata"]["name"]: p for p in pods(api)}


def env(pod: dict) -> list[tuple[str, str]]:
    return [(e["name"], e["value"]) for e in pod["spec"]["containers"][0]["env"]]


def start_all(api: FakeKubeApi) -> None:
    for pod in pods(api):
        if not pod.get("status"):
            mark_running(api, pod)


async def test_a_leader_worker_set_builds_its_groups_once_its_crd_is_installed() -> None:
    api = FakeKubeApi()
    async with running_controllers(api):
        api.create(lws_crd())
        api.create(lws())
        names = ["vllm-0", "vllm-0-1", "vllm-0-2", "vllm-1", "vllm-1-1", "vllm-1-2"]
        await eventually(lambda: sorted(by_name(api)) == names)
        leader_set = get(api, "apps", "statefulsets", "vllm")
        assert leader_set is not None
        revision = leader_set["metadata"]["labels"][P + "template-revision-hash"]
        assert leader_set["metadata"]["ownerReferences"][0]["kind"] == "LeaderWorkerSet"
        assert leader_set["spec"]["replicas"] == 2
        assert leader_set["spec"]["podManagementPolicy"] == "Parallel"
        assert leader_set["spec"]["selector"]["matchLabels"] == {
            P + "name": "vllm",
            P + "worker-index": "0",
        }
        assert leader_set["metadata"]["annotations"][P + "replicas"] == "2"
        pods_now = by_name(api)
        leader = pods_now["vllm-1"]
        labels = leader["metadata"]["labels"]
        assert labels["role"] == "leader"
        assert (labels[P + "name"], labels[P + "group-index"], labels[P + "worker-index"]) == (
            "vllm",
            "1",
            "0",
        )
        assert labels[P + "template-revision-hash"] == revision
        assert len(labels[P + "group-key"]) == 40
        assert leader["metadata"]["annotations"][P + "size"] == "3"
        assert env(leader) == [
            ("LWS_LEADER_ADDRESS", "vllm-1.vllm.default"),
            ("LWS_GROUP_SIZE", "3"),
            ("LWS_WORKER_INDEX", "0"),
            ("MODE", "leader"),
        ]
        worker = pods_now["vllm-1-2"]
        assert worker["metadata"]["labels"][P + "worker-index"] == "2"
        assert worker["metadata"]["labels"][P + "group-key"] == labels[P + "group-key"]
        assert worker["metadata"]["annotations"][P + "leader-name"] == "vllm-1"
        assert env(worker)[:3] == [
            ("LWS_LEADER_ADDRESS", "vllm-1.vllm.default"),
            ("LWS_GROUP_SIZE", "3"),
            ("LWS_WORKER_INDEX", "2"),
        ]
        assert worker["spec"]["subdomain"] == "vllm"
        workers = get(api, "apps", "statefulsets", "vllm-1")
        assert workers is not None
        assert workers["metadata"]["ownerReferences"][0]["name"] == "vllm-1", (
            "owned by the leader pod"
        )
        assert (workers["spec"]["replicas"], workers["spec"]["ordinals"]) == (2, {"start": 1})
        service = get(api, "", "services", "vllm")
        assert service is not None
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["selector"] == {P + "name": "vllm"}
        status = the_lws(api).get("status") or {}
        assert [c["type"] for c in status["conditions"] if c["status"] == "True"] == ["Progressing"]
        start_all(api)
        await eventually(lambda: (the_lws(api).get("status") or {}).get("readyReplicas") == 2)
        status = the_lws(api)["status"]
        assert (status["replicas"], status["updatedReplicas"]) == (2, 2)
        assert status["hpaPodSelector"] == f"{P}name=vllm,{P}worker-index=0"
        conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
        assert conditions == {
            "Available": ("True", "AllGroupsReady"),
            "Progressing": ("False", "GroupsProgressing"),
        }
        reasons = {
            e["reason"]
            for e in kubelet(api).list("", "events", "default")
            if e["involvedObject"]["kind"] == "LeaderWorkerSet"
        }
        assert {"CreatingRevision", "GroupsProgressing", "AllGroupsReady"} <= reasons


async def test_a_template_change_rolls_groups_from_the_highest_index() -> None:
    api = FakeKubeApi(crds=[lws_crd()])
    async with running_controllers(api):
        api.create(lws(replicas=2, size=2))
        await eventually(lambda: len(pods(api)) == 4)
        start_all(api)
        await eventually(lambda: (the_lws(api).get("status") or {}).get("readyReplicas") == 2)
        updated = the_lws(api)
        for role in ("leaderTemplate", "workerTemplate"):
            updated["spec"]["leaderWorkerTemplate"][role]["spec"]["containers"][0]["image"] = (
                "engine:2"
            )
        kubelet(api).update(updated)
        order: list[str] = []

        def images() -> dict[str, str]:
            start_all(api)
            found = {n: p["spec"]["containers"][0]["image"] for n, p in by_name(api).items()}
            for name, image in found.items():
                if image == "engine:2" and name not in order:
                    order.append(name)
            return found

        await eventually(
            lambda: (
                set(images().values()) == {"engine:2"}
                and len(images()) == 4
                and the_lws(api)["status"].get("readyReplicas") == 2
                and the_lws(api)["status"].get("updatedReplicas") == 2
            )
        )
        assert order.index("vllm-1") < order.index("vllm-0"), "the highest group first"
        events = [
            e["message"]
            for e in kubelet(api).list("", "events", "default")
            if e["reason"] == "GroupsUpdating"
        ]
        assert "Updating replica 0" in events


async def test_a_lost_worker_recreates_its_group_and_the_crd_removal_ends_everything() -> None:
    api = FakeKubeApi(crds=[lws_crd()])
    client = kubelet(api)
    async with running_controllers(api):
        api.create(lws(replicas=1, size=2))
        await eventually(lambda: sorted(by_name(api)) == ["vllm-0", "vllm-0-1"])
        leader_uid = by_name(api)["vllm-0"]["metadata"]["uid"]
        client.delete(by_name(api)["vllm-0-1"])
        await eventually(
            lambda: (
                (p := by_name(api).get("vllm-0")) is not None and p["metadata"]["uid"] != leader_uid
            )
        )
        await eventually(lambda: sorted(by_name(api)) == ["vllm-0", "vllm-0-1"])
        messages = [
            e["message"]
            for e in client.list("", "events", "default")
            if e["reason"] == "RecreateGroup"
        ]
        assert messages == [
            "Worker pod vllm-0-1 failed, deleted leader pod vllm-0 to recreate group 0"
        ]
        crd = client.get(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "",
            "leaderworkersets.leaderworkerset.x-k8s.io",
        )
        assert crd is not None
        client.delete(crd)
        await eventually(lambda: not pods(api) and not client.list("apps", "statefulsets"))
        # without the CRD the controller idles; installed again, it works again
        api.create(lws_crd())
        api.create(lws(replicas=1, size=1))
        await eventually(lambda: sorted(by_name(api)) == ["vllm-0"])


@pytest.mark.conformance
async def test_the_upstream_crd_drives_the_same_groups() -> None:
    crd = yaml.safe_load(
        shared_path("upstream", "lws", "leaderworkerset.x-k8s.io_leaderworkersets.yaml").read_text()
    )
    api = FakeKubeApi(crds=[crd])
    async with running_controllers(api):
        created = api.create(lws(replicas=1, size=2))
        assert created["spec"]["startupPolicy"] == "LeaderCreated", "upstream's defaults applied"
        await eventually(lambda: sorted(by_name(api)) == ["vllm-0", "vllm-0-1"])
        start_all(api)
        await eventually(lambda: (the_lws(api).get("status") or {}).get("readyReplicas") == 1)
        assert copy.deepcopy(the_lws(api)["status"]["replicas"]) == 1
