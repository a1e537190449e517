"""Deployments and ReplicaSets: the simulated controllers against the in-process API
server, with the test playing the kubelet (pods marked Running/Ready by hand)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from arks_devcluster import FakeKubeApi
from arks_devcluster.controllers import rollout
from arks_devcluster.controllers.testing import (
    eventually,
    kubelet,
    mark_running,
    pods,
    running_controllers,
)
from arks_devcluster.controllers.util import SAFE_ALPHABET, scaled_value
from arks_devcluster.store import Event

HASH = "pod-template-hash"


def deployment(name: str = "web", replicas: int = 3, image: str = "nginx:1", **spec: Any) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "annotations": {"team": "a"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
            **spec,
        },
    }


def get(api: FakeKubeApi, plural: str, name: str, group: str = "apps") -> dict:
    found = kubelet(api).get(group, plural, "default", name)
    assert found is not None, f"{plural}/{name} is missing"
    return found


def update(api: FakeKubeApi, plural: str, name: str, change: Callable[[dict], None]) -> None:
    obj = get(api, plural, name)
    change(obj)
    kubelet(api).update(obj)


def replica_sets(api: FakeKubeApi) -> list[dict]:
    return kubelet(api).list("apps", "replicasets", "default")


def status(api: FakeKubeApi, name: str = "web") -> dict:
    return get(api, "deployments", name).get("status") or {}


def condition(obj: dict, kind: str) -> dict:
    return next(c for c in obj["status"]["conditions"] if c["type"] == kind)


def image(pod: dict) -> str:
    return str(pod["spec"]["containers"][0]["image"])


def rolled_out(api: FakeKubeApi, name: str = "web") -> bool:
    """What `kubectl rollout status` waits for, the kubelet starting new pods meanwhile."""
    ready_all(api)
    d = get(api, "deployments", name)
    s = d.get("status") or {}
    wanted = d["spec"]["replicas"]
    return (
        s.get("observedGeneration", 0) >= d["metadata"]["generation"]
        and s.get("updatedReplicas", 0) == wanted
        and s.get("replicas", 0) == wanted
        and s.get("availableReplicas", 0) == wanted
    )


def ready_all(api: FakeKubeApi, **kwargs: Any) -> None:
    for pod in pods(api):
        if not pod.get("status"):
            mark_running(api, pod, **kwargs)


async def test_a_deployment_makes_a_replica_set_and_pods_and_reports_rollout() -> None:
    api = FakeKubeApi()
    async with running_controllers(api):
        api.create(deployment())
        await eventually(lambda: len(pods(api)) == 3)
        (rs,) = replica_sets(api)
        pod_hash = rs["metadata"]["labels"][HASH]
        assert re.fullmatch(f"[{SAFE_ALPHABET}]{{1,10}}", pod_hash)
        assert rs["metadata"]["name"] == f"web-{pod_hash}"
        assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", HASH: pod_hash}
        assert rs["spec"]["template"]["metadata"]["labels"] == {"app": "web", HASH: pod_hash}
        assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
        annotations = rs["metadata"]["annotations"]
        assert annotations["deployment.kubernetes.io/revision"] == "1"
        assert annotations["deployment.kubernetes.io/desired-replicas"] == "3"
        assert annotations["deployment.kubernetes.io/max-replicas"] == "4"
        assert annotations["team"] == "a", "the Deployment's annotations are copied"
        assert get(api, "deployments", "web")["metadata"]["annotations"][rollout.REVISION] == "1"
        for pod in pods(api):
            assert re.fullmatch(
                rf"web-{pod_hash}-[{SAFE_ALPHABET}0-9a-z]{{5}}", pod["metadata"]["name"]
            )
            assert pod["metadata"]["labels"] == {"app": "web", HASH: pod_hash}
            assert pod["metadata"]["ownerReferences"][0]["name"] == rs["metadata"]["name"]
        progressing = condition(get(api, "deployments", "web"), "Progressing")
        assert progressing["reason"] in ("NewReplicaSetCreated", "ReplicaSetUpdated")
        ready_all(api)
        await eventually(lambda: status(api).get("availableReplicas") == 3)
        d = get(api, "deployments", "web")
        assert d["status"]["observedGeneration"] == 1
        assert {k: d["status"][k] for k in ("replicas", "updatedReplicas", "readyReplicas")} == {
            "replicas": 3,
            "updatedReplicas": 3,
            "readyReplicas": 3,
        }
        assert "unavailableReplicas" not in d["status"], "0 is omitted, as upstream"
        assert condition(d, "Available")["reason"] == "MinimumReplicasAvailable"
        assert condition(d, "Progressing")["reason"] == "NewReplicaSetAvailable"
        assert condition(d, "Progressing")["message"] == (
            f'ReplicaSet "{rs["metadata"]["name"]}" has successfully progressed.'
        )
        events = {
            (e["reason"], e["message"], e["source"]["component"])
            for e in kubelet(api).list("", "events", "default")
        }
        assert (
            "ScalingReplicaSet",
            f"Scaled up replica set {rs['metadata']['name']} from 0 to 3",
            "deployment-controller",
        ) in events
        assert (
            sum(1 for e in events if e[0] == "SuccessfulCreate" and e[2] == "replicaset-controller")
            == 3
        )
        assert rs["metadata"]["managedFields"][0]["manager"] == "kube-controller-manager"


def watch_pods(api: FakeKubeApi, seen: list[tuple[int, int, set[str]]]) -> Callable[[Event], None]:
    """Record, at every pod change, (pods, ready pods, images) of the live pods."""

    def observe(event: Event) -> None:
        if event.rtype.plural != "pods":
            return
        live = [
            p
            for p in api.store.items(event.rtype, "default")
            if not p["metadata"].get("deletionTimestamp")
        ]
        ready = [
            p
            for p in live
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (p.get("status") or {}).get("conditions", [])
            )
        ]
        seen.append((len(live), len(ready), {image(p) for p in live}))

    api.store.observers.append(observe)
    return observe


async def test_a_rolling_update_stays_within_max_surge_and_max_unavailable() -> None:
    api = FakeKubeApi()
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    async with running_controllers(api):
        api.create(deployment(replicas=4, strategy=strategy))
        await eventually(lambda: len(pods(api)) == 4)
        ready_all(api)
        await eventually(lambda: status(api).get("availableReplicas") == 4)
        seen: list[tuple[int, int, set[str]]] = []
        watch_pods(api, seen)
        update(
            api,
            "deployments",
            "web",
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="nginx:2"),
        )
        await eventually(lambda: rolled_out(api))
        assert max(total for total, _, _ in seen) == 5, "one pod over the desired count at most"
        assert min(ready for _, ready, _ in seen) >= 4, "never fewer available than desired"
        assert {image(p) for p in pods(api)} == {"nginx:2"}
        d = get(api, "deployments", "web")
        assert d["metadata"]["annotations"][rollout.REVISION] == "2"
        assert d["status"]["observedGeneration"] == 2
        assert condition(d, "Progressing")["reason"] == "NewReplicaSetAvailable"
        sizes = sorted(
            (rs["metadata"]["annotations"][rollout.REVISION], rs["spec"]["replicas"])
            for rs in replica_sets(api)
        )
        assert sizes == [("1", 0), ("2", 4)], "the old ReplicaSet is kept, scaled to zero"


async def test_max_unavailable_lets_old_pods_go_before_new_ones_are_ready() -> None:
    api = FakeKubeApi()
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "50%"}}
    async with running_controllers(api):
        api.create(deployment(replicas=4, strategy=strategy))
        await eventually(lambda: len(pods(api)) == 4)
        ready_all(api)
        await eventually(lambda: status(api).get("availableReplicas") == 4)
        update(
            api,
            "deployments",
            "web",
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="nginx:2"),
        )
        # Nothing new becomes ready: two old pods go, two new ones come, and it stops there.
        await eventually(
            lambda: sorted(image(p) for p in pods(api)) == ["nginx:1"] * 2 + ["nginx:2"] * 2
        )
        d = get(api, "deployments", "web")
        await eventually(lambda: status(api).get("unavailableReplicas") == 2)
        assert condition(d, "Available")["status"] == "True", "4 - 50% may be unavailable"


async def test_recreate_removes_every_old_pod_before_creating_new_ones() -> None:
    api = FakeKubeApi()
    async with running_controllers(api):
        api.create(deployment(replicas=2, strategy={"type": "Recreate"}))
        await eventually(lambda: len(pods(api)) == 2)
        ready_all(api)
        await eventually(lambda: status(api).get("availableReplicas") == 2)
        seen: list[tuple[int, int, set[str]]] = []
        watch_pods(api, seen)
        update(
            api,
            "deployments",
            "web",
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="nginx:2"),
        )
        await eventually(lambda: [image(p) for p in pods(api)] == ["nginx:2"] * 2)
        assert all(len(images) <= 1 for _, _, images in seen), "old and new pods never together"
        ready_all(api)
        await eventually(lambda: status(api).get("availableReplicas") == 2)
        assert (
            condition(get(api, "deployments", "web"), "Available")["reason"]
            == "MinimumReplicasAvailable"
        )


async def test_scaling_paused_deployments_and_the_revision_history_limit() -> None:
    api = FakeKubeApi()
    async with running_controllers(api):
        api.create(deployment(replicas=2, revisionHistoryLimit=1))
        await eventually(lambda: len(pods(api)) == 2)
        for version in (2, 3, 4):
            update(
                api,
                "deployments",
                "web",
                lambda d, v=version: d["spec"]["template"]["spec"]["containers"][0].update(
                    image=f"nginx:{v}"
                ),
            )
            await eventually(lambda: rolled_out(api))
            assert [image(p) for p in pods(api)] == [f"nginx:{version}"] * 2
        await eventually(lambda: len(replica_sets(api)) == 2)
        revisions = sorted(
            rs["metadata"]["annotations"][rollout.REVISION] for rs in replica_sets(api)
        )
        assert revisions == ["3", "4"], "one old ReplicaSet kept beside the new one"
        update(api, "deployments", "web", lambda d: d["spec"].update(replicas=5))
        await eventually(lambda: len(pods(api)) == 5)
        update(api, "deployments", "web", lambda d: d["spec"].update(paused=True))
        await eventually(
            lambda: (
                condition(get(api, "deployments", "web"), "Progressing")["reason"]
                == "DeploymentPaused"
            )
        )
        update(
            api,
            "deployments",
            "web",
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="nginx:5"),
        )
        update(api, "deployments", "web", lambda d: d["spec"].update(replicas=1))
        await eventually(lambda: len(pods(api)) == 1)
        assert len(replica_sets(api)) == 2, "paused: no new ReplicaSet, but scaling applies"
        assert image(pods(api)[0]) == "nginx:4"
        update(api, "deployments", "web", lambda d: d["spec"].update(paused=False))
        await eventually(lambda: rolled_out(api))
        assert [image(p) for p in pods(api)] == ["nginx:5"]
        events = [
            e["message"]
            for e in kubelet(api).list("", "events", "default")
            if e["reason"] == "ScalingReplicaSet"
        ]
        assert any(re.fullmatch(r"Scaled down replica set web-\w+ from 5 to 1", m) for m in events)


async def test_min_ready_seconds_delays_availability() -> None:
    api = FakeKubeApi()
    async with running_controllers(api):
        api.create(deployment(replicas=2, minReadySeconds=3600))
        await eventually(lambda: len(pods(api)) == 2)
        ready_all(api)
        await eventually(lambda: status(api).get("readyReplicas") == 2)
        s = status(api)
        assert s.get("availableReplicas", 0) == 0
        assert s["unavailableReplicas"] == 2
        assert condition(get(api, "deployments", "web"), "Available")["status"] == "False"
        for pod in pods(api):  # ready for more than an hour already
            mark_running(api, pod, ready_since="2020-01-01T00:00:00Z")
        await eventually(lambda: status(api).get("availableReplicas") == 2)
        assert (
            (
                get(api, "replicasets", replica_sets(api)[0]["metadata"]["name"])["status"][
                    "availableReplicas"
                ]
            )
            == 2
        )


async def test_a_replica_set_replaces_lost_pods_and_deletes_unready_ones_first() -> None:
    api = FakeKubeApi()
    client = kubelet(api)
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "front", "namespace": "default"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "front"}},
            "template": {
                "metadata": {"labels": {"app": "front"}, "annotations": {"note": "n"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }
    async with running_controllers(api):
        api.create(rs)
        await eventually(lambda: len(pods(api)) == 3)
        first, second, third = pods(api)
        assert first["metadata"]["annotations"] == {"note": "n"}
        mark_running(api, first)
        mark_running(api, second)
        await eventually(
            lambda: (get(api, "replicasets", "front").get("status") or {}).get("readyReplicas") == 2
        )
        s = get(api, "replicasets", "front")["status"]
        assert s == {
            "replicas": 3,
            "fullyLabeledReplicas": 3,
            "readyReplicas": 2,
            "availableReplicas": 2,
            "observedGeneration": 1,
        }
        client.delete(first)
        await eventually(
            lambda: (
                len(pods(api)) == 3
                and first["metadata"]["name"] not in {p["metadata"]["name"] for p in pods(api)}
            )
        )
        update(api, "replicasets", "front", lambda r: r["spec"].update(replicas=1))
        await eventually(
            lambda: [p["metadata"]["name"] for p in pods(api)] == [second["metadata"]["name"]]
        )
        events = [
            e["message"]
            for e in client.list("", "events", "default")
            if e["reason"] == "SuccessfulDelete"
        ]
        assert f"Deleted pod: {third['metadata']['name']}" in events, "the unready pod went first"


def test_fenceposts_round_as_upstream() -> None:
    assert scaled_value("25%", 3, round_up=True) == 1
    assert scaled_value("25%", 3, round_up=False) == 0
    assert rollout.fenceposts(deployment(replicas=10)) == (3, 2)
    zero = deployment(
        replicas=3, strategy={"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "10%"}}
    )
    assert rollout.fenceposts(zero) == (0, 1), "both zero: one may be unavailable"
    assert rollout.max_unavailable(deployment(strategy={"type": "Recreate"})) == 0
    with pytest.raises(ValueError, match="IntOrString"):
        scaled_value("lots", 3, round_up=True)


MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
  namespace: default
spec:
  replicas: 3
  selector:
    matchLabels: {app: hello}
  template:
    metadata:
      labels: {app: hello}
    spec:
      containers:
      - name: hello
        image: hello:1
"""


async def test_kubectl_apply_rollout_status_and_scale(cluster: Any, tmp_path: Path) -> None:
    api = cluster.api
    manifest = tmp_path / "hello.yaml"
    manifest.write_text(MANIFEST)
    assert yaml.safe_load(MANIFEST)["kind"] == "Deployment"
    async with running_controllers(api):
        await cluster.kubectl.check("apply", "-f", str(manifest))
        await eventually(lambda: len(pods(api)) == 3)
        ready_all(api)
        done = await cluster.kubectl.check("rollout", "status", "deployment/hello", "--timeout=30s")
        assert 'deployment "hello" successfully rolled out' in done.out
        await cluster.kubectl.check("scale", "deployment/hello", "--replicas=1")
        await eventually(lambda: len(pods(api)) == 1)
        listed = await cluster.kubectl.check("get", "deployment", "hello", "-o", "json")
        assert listed.json()["spec"]["replicas"] == 1
        await eventually(lambda: status(api, "hello").get("replicas") == 1)
        shown = await cluster.kubectl.check("get", "rs", "-o", "name")
        assert re.fullmatch(r"replicaset\.apps/hello-\w+\n", shown.out)
