"""The configured nodes as Node objects, registered and kept by the kubelet.

Each node is written as a real kubelet registers itself: the well-known labels
(`kubernetes.io/hostname`, `kubernetes.io/os`, `kubernetes.io/arch`,
`node.kubernetes.io/instance-type`) plus the configured ones, the configured taints,
capacity and allocatable (cpu, memory, pods, ephemeral-storage, `nvidia.com/gpu`), the
four conditions with Ready=True (KubeletReady), addresses (InternalIP 127.0.0.1 and
Hostname) and nodeInfo. A node deleted while the kubelet runs is registered again; one
that already exists is left as it is (a user's labels or cordon stay).
"""

from __future__ import annotations

import platform
import uuid
from pathlib import Path
from typing import Any

from arks_devcluster.discovery import VERSION_INFO
from arks_devcluster.kubelet.config import NodeConfig
from arks_devcluster.local_client import LocalClient
from arks_devcluster.store import now

Obj = dict[str, Any]
HOST_IP = "127.0.0.1"
GPU = "nvidia.com/gpu"
KUBELET_VERSION = str(VERSION_INFO["gitVersion"]).split("+", 1)[0]
RUNTIME_VERSION = "arks-devcluster://0.1.0"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def arch() -> str:
    machine = platform.machine()
    return _ARCH.get(machine, machine.lower() or "amd64")


def _os_image() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def allocatable(node: NodeConfig) -> dict[str, str]:
    out = {
        "cpu": node.cpu,
        "memory": node.memory,
        "pods": str(node.pods),
        "ephemeral-storage": "1Ti",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
    }
    if node.gpus:
        out[GPU] = str(node.gpus)
    return out


def _condition(kind: str, status: str, reason: str, message: str, stamp: str) -> Obj:
    return {
        "type": kind,
        "status": status,
        "lastHeartbeatTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def node_object(node: NodeConfig) -> Obj:
    """The Node a kubelet on this machine registers for `node`."""
    stamp = now()
    labels = {
        "beta.kubernetes.io/arch": arch(),
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch(),
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": "arks-devcluster",
        **node.labels,
    }
    spec: Obj = {}
    if node.taints:
        spec["taints"] = [dict(t) for t in node.taints]
    resources = allocatable(node)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": labels,
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": spec,
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "conditions": [
                _condition(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                    stamp,
                ),
                _condition(
                    "DiskPressure",
                    "False",
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                    stamp,
                ),
                _condition(
                    "PIDPressure",
                    "False",
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                    stamp,
                ),
                _condition(
                    "Ready", "True", "KubeletReady", "kubelet is posting ready status", stamp
                ),
            ],
            "addresses": [
                {"type": "InternalIP", "address": HOST_IP},
                {"type": "Hostname", "address": node.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, node.name).hex,
                "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, node.name)),
                "bootID": str(uuid.uuid4()),
                "kernelVersion": platform.release(),
                "osImage": _os_image(),
                "containerRuntimeVersion": RUNTIME_VERSION,
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": arch(),
            },
            "images": [],
        },
    }


def register(client: LocalClient, nodes: tuple[NodeConfig, ...]) -> list[str]:
    """Create the nodes that do not exist; the names of those created."""
    created = []
    for node in nodes:
        if client.get("", "nodes", "", node.name) is not None:
            continue
        wanted = node_object(node)
        stored = client.create(wanted)
        stored["status"] = wanted["status"]
        client.update(stored, status=True)
        created.append(node.name)
    return created
