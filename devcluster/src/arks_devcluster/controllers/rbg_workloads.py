"""The workload of one RoleBasedGroup role (sgl-project/rbg pkg/reconciler): a
StatefulSet (the default, with its headless Service), a Deployment or a LeaderWorkerSet
named `<rbg>-<role>` (cut to 63 characters), its readiness and its role status.

Every workload and pod template carries `rolebasedgroup.workloads.x-k8s.io/name`,
`/role` and `/group-unique-key` (SHA-1 of `<namespace>/<rbg>`), the workload also
`/role-revision-hash-<role>` (the role's hash) and the annotation `/role-size`. Every
container gets the env `GROUP_NAME`, `ROLE_NAME` and, for StatefulSet and
LeaderWorkerSet roles, `ROLE_INDEX` (a fieldRef to the pod-index label), sorted by name
as upstream. A LeaderWorkerSet role's leader and worker templates are the role template
strategic-merge-patched with `leaderWorkerSet.patchLeaderTemplate` /
`patchWorkerTemplate`. Not done: the `/etc/rbg` cluster-config ConfigMap and sidecar
injection, exclusive topology, gang-scheduling PodGroups, engine runtime profiles.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from arks_devcluster.controllers.util import int_or, template_hash
from arks_devcluster.local_client import controller_ref
from arks_devcluster.strategic import strategic_merge

Obj = dict[str, Any]
PREFIX = "rolebasedgroup.workloads.x-k8s.io/"
NAME, ROLE, GROUP_KEY = PREFIX + "name", PREFIX + "role", PREFIX + "group-unique-key"
ROLE_SIZE = PREFIX + "role-size"
KINDS = {
    "StatefulSet": ("apps", "statefulsets", "apps/v1"),
    "Deployment": ("apps", "deployments", "apps/v1"),
    "LeaderWorkerSet": (
        "leaderworkerset.x-k8s.io",
        "leaderworkersets",
        "leaderworkerset.x-k8s.io/v1",
    ),
}


def kind_of(role: Obj) -> str:
    return str((role.get("workload") or {}).get("kind") or "StatefulSet")


def workload_name(rbg: Obj, role: Obj) -> str:
    return f"{rbg['metadata']['name']}-{role['name']}"[:63].rstrip("-")


def service_name(rbg: Obj, role: Obj) -> str:
    return f"s-{rbg['metadata']['name']}-{role['name']}"[:63].rstrip("-")


def common_labels(rbg: Obj, role: Obj) -> dict[str, str]:
    meta = rbg["metadata"]
    key = hashlib.sha1(f"{meta['namespace']}/{meta['name']}".encode()).hexdigest()
    return {NAME: meta["name"], ROLE: role["name"], GROUP_KEY: key}


def _pod_template(rbg: Obj, role: Obj, base: Obj) -> Obj:
    template = copy.deepcopy(base)
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), **common_labels(rbg, role)}
    injected = [
        {"name": "GROUP_NAME", "value": rbg["metadata"]["name"]},
        {"name": "ROLE_NAME", "value": role["name"]},
    ]
    if kind_of(role) in ("StatefulSet", "LeaderWorkerSet"):
        path = "metadata.labels['apps.kubernetes.io/pod-index']"
        injected.append({"name": "ROLE_INDEX", "valueFrom": {"fieldRef": {"fieldPath": path}}})
    for container in (template.get("spec") or {}).get("containers") or []:
        env = {e["name"]: e for e in container.get("env") or []}
        env.update({e["name"]: e for e in injected})
        container["env"] = [env[k] for k in sorted(env)]
    return template


def desired(rbg: Obj, role: Obj) -> Obj:
    """The workload object a role asks for (ValueError for an unknown kind)."""
    kind = kind_of(role)
    if kind not in KINDS:
        raise ValueError(f"workload {kind!r} of role {role['name']!r} is not supported")
    labels = common_labels(rbg, role)
    replicas = int_or(role.get("replicas"), 1)
    rolling = (role.get("rolloutStrategy") or {}).get("rollingUpdate") or {}
    template = role.get("template") or {}
    spec: Obj
    if kind == "LeaderWorkerSet":
        lws = role.get("leaderWorkerSet") or {}
        leader = strategic_merge(template, lws.get("patchLeaderTemplate") or {})
        worker = strategic_merge(template, lws.get("patchWorkerTemplate") or {})
        config = {
            k: rolling[k] for k in ("maxSurge", "maxUnavailable", "partition") if k in rolling
        }
        spec = {
            "replicas": replicas,
            "leaderWorkerTemplate": {
                "leaderTemplate": _pod_template(rbg, role, leader),
                "workerTemplate": _pod_template(rbg, role, worker),
                "size": int_or(lws.get("size"), 1),
                "restartPolicy": "None"
                if role.get("restartPolicy") == "None"
                else "RecreateGroupOnPodRestart",
            },
        }
        if config:
            spec["rolloutStrategy"] = {
                "type": "RollingUpdate",
                "rollingUpdateConfiguration": config,
            }
    else:
        spec = {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": _pod_template(rbg, role, template),
        }
        if kind == "StatefulSet":
            spec.update(podManagementPolicy="Parallel", serviceName=service_name(rbg, role))
            update = {"partition": int_or(rolling.get("partition"), 0)}
            spec["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": update}
        elif rolling:
            config = {k: rolling[k] for k in ("maxSurge", "maxUnavailable") if k in rolling}
            spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": config}
    api_version = KINDS[kind][2]
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": workload_name(rbg, role),
            "namespace": rbg["metadata"]["namespace"],
            "labels": {**labels, f"{PREFIX}role-revision-hash-{role['name']}": template_hash(role)},
            "annotations": {ROLE_SIZE: str(replicas)},
            "ownerReferences": [controller_ref(rbg)],
        },
        "spec": spec,
    }


def headless_service(rbg: Obj, role: Obj, sts: Obj) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": sts["spec"]["serviceName"],
            "namespace": rbg["metadata"]["namespace"],
            "labels": common_labels(rbg, role),
            "annotations": {ROLE_SIZE: str(int_or(role.get("replicas"), 1))},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "StatefulSet",
                    "name": sts["metadata"]["name"],
                    "uid": sts["metadata"]["uid"],
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "clusterIP": "None",
            "selector": {NAME: rbg["metadata"]["name"], ROLE: role["name"]},
            "publishNotReadyAddresses": True,
        },
    }


def role_status(role: Obj, workload: Obj) -> Obj:
    """(name, replicas, readyReplicas) as each workload reconciler reports them."""
    status = workload.get("status") or {}
    if kind_of(role) == "LeaderWorkerSet":
        replicas = int_or(status.get("replicas"), 0)
    else:
        replicas = int_or((workload.get("spec") or {}).get("replicas"), 1)
    return {
        "name": role["name"],
        "replicas": replicas,
        "readyReplicas": int_or(status.get("readyReplicas"), 0),
    }


def ready(role: Obj, workload: Obj | None) -> bool:
    """CheckWorkloadReady: every wanted replica ready (for a LeaderWorkerSet, counted
    against spec.replicas: upstream compares with status.replicas, 0 = 0 before the
    first status)."""
    if workload is None:
        return False
    wanted = int_or((workload.get("spec") or {}).get("replicas"), 1)
    return int_or((workload.get("status") or {}).get("readyReplicas"), 0) == wanted
