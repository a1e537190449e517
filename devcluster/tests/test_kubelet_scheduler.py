"""Nodes are registered and kept; the scheduler binds pods where they fit, says why not
in upstream's words, tries again when room is made and spreads pods across nodes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from arks_devcluster import FakeKubeApi
from arks_devcluster.kubelet import NodeConfig
from arks_devcluster.kubelet.testing import (
    condition,
    current,
    events,
    eventually,
    fast_config,
    pod,
    running_kubelet,
)
from arks_devcluster.local_client import LocalClient

VLLM = "vllm/vllm-openai:latest"


def _gpus(count: int) -> dict:
    return {"limits": {"nvidia.com/gpu": str(count)}}


def _node_of(api: FakeKubeApi, name: str) -> str | None:
    return current(api, name)["spec"].get("nodeName")


async def test_nodes_are_registered_ready_and_recreated(tmp_path: Path) -> None:
    api = FakeKubeApi()
    async with running_kubelet(api, fast_config(), tmp_path):
        node = api.get("v1", "nodes", "", "devcluster-node-1")
        assert node is not None
        labels = node["metadata"]["labels"]
        assert labels["kubernetes.io/hostname"] == "devcluster-node-1"
        assert labels["kubernetes.io/os"] == "linux"
        assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
        status = node["status"]
        assert status["allocatable"]["nvidia.com/gpu"] == "8"
        assert status["capacity"]["cpu"] == "64"
        assert status["capacity"]["pods"] == "110"
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("True", "KubeletReady")
        assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
        assert status["nodeInfo"]["kubeletVersion"].startswith("v1.32.")
        node["spec"]["unschedulable"] = True  # kubectl cordon
        LocalClient(api, manager="kubectl").update(node)
        api.create(pod("cordoned", image=VLLM))
        await eventually(lambda: condition(api, "cordoned", "PodScheduled").get("message"))
        assert condition(api, "cordoned", "PodScheduled")["message"].startswith(
            "0/1 nodes are available: 1 node(s) were unschedulable."
        )
        api.collector.delete(api.registry.resource("", "nodes"), "", "devcluster-node-1", {})
        await eventually(lambda: api.get("v1", "nodes", "", "devcluster-node-1") is not None)
        await eventually(lambda: _node_of(api, "cordoned") == "devcluster-node-1")


async def test_too_many_gpus_is_unschedulable_until_room_is_made(tmp_path: Path) -> None:
    api = FakeKubeApi()
    async with running_kubelet(api, fast_config(), tmp_path):
        api.create(pod("hog", image=VLLM, resources=_gpus(6)))
        await eventually(lambda: _node_of(api, "hog") == "devcluster-node-1")
        api.create(pod("big", image=VLLM, resources=_gpus(4)))
        await eventually(lambda: condition(api, "big", "PodScheduled").get("status") == "False")
        scheduled = condition(api, "big", "PodScheduled")
        message = (
            "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are"
            " available: 1 No preemption victims found for incoming pod."
        )
        assert (scheduled["reason"], scheduled["message"]) == ("Unschedulable", message)
        failed = [e for e in events(api, "big") if e["reason"] == "FailedScheduling"]
        assert failed[0]["type"] == "Warning"
        assert failed[0]["message"] == message
        assert failed[0]["source"]["component"] == "default-scheduler"
        assert current(api, "big")["status"]["phase"] == "Pending"
        assigned = [e["message"] for e in events(api, "hog") if e["reason"] == "Scheduled"]
        assert assigned == ["Successfully assigned default/hog to devcluster-node-1"]

        api.collector.delete(api.registry.resource("", "pods"), "default", "hog", {})
        await eventually(lambda: _node_of(api, "big") == "devcluster-node-1")
        await eventually(lambda: condition(api, "big", "Ready").get("status") == "True")


async def test_selectors_affinity_taints_and_spreading(tmp_path: Path) -> None:
    base = fast_config()
    nodes = (
        NodeConfig("cpu-1", labels={"pool": "cpu"}),
        NodeConfig("cpu-2", labels={"pool": "cpu"}),
        NodeConfig(
            "gpu-1",
            labels={"pool": "gpu", "rank": "5"},
            taints=({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},),
            gpus=8,
        ),
    )
    config = dataclasses.replace(base, nodes=nodes)
    api = FakeKubeApi()
    async with running_kubelet(api, config, tmp_path):
        for i in range(4):
            api.create(pod(f"web-{i}", image=VLLM))
        tolerant = {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]}
        api.create(pod("gpu", image=VLLM, resources=_gpus(1), spec=tolerant))
        api.create(pod("intolerant", image=VLLM, resources=_gpus(1)))
        affinity = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "rank", "operator": "Gt", "values": ["3"]}]}
                    ]
                }
            }
        }
        api.create(pod("ranked", image=VLLM, spec={"affinity": affinity, **tolerant}))
        api.create(pod("nowhere", image=VLLM, spec={"nodeSelector": {"pool": "tpu"}}))
        await eventually(lambda: all(_node_of(api, f"web-{i}") for i in range(4)))
        placed = [_node_of(api, f"web-{i}") for i in range(4)]
        assert sorted(placed) == ["cpu-1", "cpu-1", "cpu-2", "cpu-2"], "spread, taint kept out"
        assert _node_of(api, "gpu") == "gpu-1"
        assert _node_of(api, "ranked") == "gpu-1"
        await eventually(lambda: condition(api, "intolerant", "PodScheduled").get("message"))
        assert condition(api, "intolerant", "PodScheduled")["message"] == (
            "0/3 nodes are available: 1 node(s) had untolerated taint {nvidia.com/gpu: present},"
            " 2 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: 1 Preemption is"
            " not helpful for scheduling, 2 No preemption victims found for incoming pod."
        )
        await eventually(lambda: condition(api, "nowhere", "PodScheduled").get("message"))
        assert condition(api, "nowhere", "PodScheduled")["message"] == (
            "0/3 nodes are available: 1 node(s) had untolerated taint {nvidia.com/gpu: present},"
            " 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are"
            " available: 3 Preemption is not helpful for scheduling."
        )


async def test_missing_claims_and_other_schedulers(tmp_path: Path) -> None:
    api = FakeKubeApi()
    volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    async with running_kubelet(api, fast_config(), tmp_path):
        api.create(pod("claimant", image=VLLM, spec={"volumes": volumes}))
        api.create(pod("theirs", image=VLLM, spec={"schedulerName": "volcano"}))
        await eventually(lambda: condition(api, "claimant", "PodScheduled").get("message"))
        assert condition(api, "claimant", "PodScheduled")["message"] == (
            '0/1 nodes are available: persistentvolumeclaim "data" not found. preemption: 0/1'
            " nodes are available: 1 Preemption is not helpful for scheduling."
        )
        api.create(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data", "namespace": "default"},
                "spec": {"accessModes": ["ReadWriteOnce"]},
            }
        )
        await eventually(lambda: _node_of(api, "claimant") == "devcluster-node-1")
        assert _node_of(api, "theirs") is None
        assert "status" not in current(api, "theirs")
