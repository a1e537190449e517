"""StatefulSets and the claim binder: ordered and parallel pods, claims, rolling updates
by partition; the test plays the kubelet."""

from __future__ import annotations

from typing import Any

from arks_devcluster import FakeKubeApi
from arks_devcluster.controllers.testing import (
    eventually,
    kubelet,
    mark_finished,
    mark_running,
    pods,
    running_controllers,
)
from arks_devcluster.store import Event


def statefulset(replicas: int = 3, **spec: Any) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "serviceName": "web",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
            },
            **spec,
        },
    }


CLAIMS = [
    {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
]


def sts(api: FakeKubeApi) -> dict:
    found = kubelet(api).get("apps", "statefulsets", "default", "web")
    assert found is not None
    return found


def change(api: FakeKubeApi, **spec: Any) -> None:
    obj = sts(api)
    obj["spec"].update(spec)
    kubelet(api).update(obj)


def names(api: FakeKubeApi) -> list[str]:
    return sorted(p["metadata"]["name"] for p in pods(api))


def start_all(api: FakeKubeApi) -> None:
    for pod in pods(api):
        if not pod.get("status"):
            mark_running(api, pod)


def record(api: FakeKubeApi, kinds: tuple[str, ...] = ("ADDED", "DELETED")) -> list[str]:
    seen: list[str] = []

    def observe(event: Event) -> None:
        if event.rtype.plural == "pods" and event.type in kinds:
            seen.append(f"{event.type} {event.obj['metadata']['name']}")

    api.store.observers.append(observe)
    return seen


async def test_ordered_ready_creates_one_pod_at_a_time_with_its_claim() -> None:
    api = FakeKubeApi()
    client = kubelet(api)
    async with running_controllers(api):
        seen = record(api)
        api.create(statefulset(volumeClaimTemplates=CLAIMS))
        await eventually(lambda: names(api) == ["web-0"])
        pod = pods(api)[0]
        labels = pod["metadata"]["labels"]
        revision = labels["controller-revision-hash"]
        assert labels["statefulset.kubernetes.io/pod-name"] == "web-0"
        assert labels["apps.kubernetes.io/pod-index"] == "0"
        assert revision.startswith("web-")
        assert (pod["spec"]["hostname"], pod["spec"]["subdomain"]) == ("web-0", "web")
        assert pod["spec"]["volumes"] == [
            {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}}
        ]
        claim = await eventually(
            lambda: (
                (c := client.get("", "persistentvolumeclaims", "default", "data-web-0"))
                and c.get("status")
                and c
            )
        )
        assert claim["status"] == {
            "phase": "Bound",
            "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": "1Gi"},
        }
        assert claim["metadata"]["labels"] == {"app": "web"}
        assert claim["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
        assert claim["spec"]["volumeName"] == f"pvc-{claim['metadata']['uid']}"
        assert "ownerReferences" not in claim["metadata"], "claims are retained by default"
        for expected in (["web-0", "web-1"], ["web-0", "web-1", "web-2"]):
            assert len(pods(api)) == len(expected) - 1, (
                "the next pod waits for the last to be ready"
            )
            start_all(api)
            await eventually(lambda e=expected: names(api) == e)
        start_all(api)
        await eventually(lambda: (sts(api).get("status") or {}).get("readyReplicas") == 3)
        status = sts(api)["status"]
        assert status == {
            "observedGeneration": 1,
            "replicas": 3,
            "readyReplicas": 3,
            "availableReplicas": 3,
            "currentReplicas": 3,
            "updatedReplicas": 3,
            "currentRevision": revision,
            "updateRevision": revision,
            "collisionCount": 0,
        }
        assert seen == ["ADDED web-0", "ADDED web-1", "ADDED web-2"]
        unready = client.get("", "pods", "default", "web-0")
        assert unready is not None
        mark_running(api, unready, ready=False)
        await eventually(lambda: sts(api)["status"].get("readyReplicas") == 2)
        change(api, replicas=1)
        await eventually(lambda: sts(api)["status"]["observedGeneration"] == 2)
        assert names(api) == ["web-0", "web-1", "web-2"], "no removal while web-0 is not ready"
        mark_running(api, unready)
        await eventually(lambda: names(api) == ["web-0"])
        assert seen[-2:] == ["DELETED web-2", "DELETED web-1"], "from the highest ordinal"
        claims = sorted(
            c["metadata"]["name"] for c in client.list("", "persistentvolumeclaims", "default")
        )
        assert claims == ["data-web-0", "data-web-1", "data-web-2"]
        events = {e["message"] for e in client.list("", "events", "default")}
        assert "create Pod web-0 in StatefulSet web successful" in events
        assert "create Claim data-web-0 Pod web-0 in StatefulSet web success" in events
        assert "delete Pod web-2 in StatefulSet web successful" in events
        client.delete(sts(api))
        await eventually(lambda: not pods(api))
        assert len(client.list("", "persistentvolumeclaims", "default")) == 3


async def test_parallel_pods_claims_deleted_with_the_set_and_failed_pods_replaced() -> None:
    api = FakeKubeApi()
    client = kubelet(api)
    policy = {"whenDeleted": "Delete", "whenScaled": "Delete"}
    async with running_controllers(api):
        api.create(
            statefulset(
                podManagementPolicy="Parallel",
                volumeClaimTemplates=CLAIMS,
                persistentVolumeClaimRetentionPolicy=policy,
                ordinals={"start": 5},
            )
        )
        await eventually(lambda: names(api) == ["web-5", "web-6", "web-7"])
        failed = mark_finished(api, pods(api)[0], succeeded=False)
        await eventually(
            lambda: (
                (p := client.get("", "pods", "default", "web-5"))
                and p["metadata"]["uid"] != failed["metadata"]["uid"]
            )
        )
        change(api, replicas=1)
        await eventually(lambda: names(api) == ["web-5"])
        claims = [
            c["metadata"]["name"] for c in client.list("", "persistentvolumeclaims", "default")
        ]
        assert claims == ["data-web-5"], "whenScaled: Delete"
        client.delete(sts(api))
        await eventually(lambda: not client.list("", "persistentvolumeclaims", "default"))


async def test_rolling_update_from_the_highest_ordinal_down_to_the_partition() -> None:
    api = FakeKubeApi()
    async with running_controllers(api):
        api.create(
            statefulset(
                podManagementPolicy="Parallel",
                updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
            )
        )
        await eventually(lambda: len(pods(api)) == 3)
        start_all(api)
        await eventually(lambda: (sts(api).get("status") or {}).get("readyReplicas") == 3)
        old = sts(api)["status"]["currentRevision"]
        seen = record(api, ("DELETED",))
        template = sts(api)["spec"]["template"]
        template["spec"]["containers"][0]["image"] = "nginx:2"
        change(api, template=template)

        def images() -> dict[str, str]:
            start_all(api)
            return {p["metadata"]["name"]: p["spec"]["containers"][0]["image"] for p in pods(api)}

        await eventually(
            lambda: (
                images() == {"web-0": "nginx:1", "web-1": "nginx:2", "web-2": "nginx:2"}
                and (sts(api)["status"].get("updatedReplicas") == 2)
            )
        )
        assert seen == ["DELETED web-2", "DELETED web-1"]
        status = sts(api)["status"]
        assert status["currentRevision"] == old != status["updateRevision"]
        assert status["currentReplicas"] == 1
        web0 = kubelet(api).get("", "pods", "default", "web-0")
        assert web0 is not None
        kubelet(api).delete(web0)  # recreated below the partition: at the old revision
        await eventually(lambda: images().get("web-0") == "nginx:1")
        change(api, updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        await eventually(
            lambda: (
                set(images().values()) == {"nginx:2"}
                and sts(api)["status"].get("currentRevision")
                == sts(api)["status"]["updateRevision"]
            )
        )
        assert sts(api)["status"]["currentReplicas"] == 3


async def test_a_claim_is_bound_as_it_is_created() -> None:
    api = FakeKubeApi()
    client = kubelet(api)
    async with running_controllers(api):
        client.create(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "models", "namespace": "default"},
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "resources": {"requests": {"storage": "20Gi"}},
                },
            }
        )
        claim = await eventually(
            lambda: (
                (c := client.get("", "persistentvolumeclaims", "default", "models"))
                and c.get("status")
                and c
            )
        )
        assert claim["status"]["phase"] == "Bound"
        assert claim["status"]["capacity"] == {"storage": "20Gi"}
        assert claim["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
