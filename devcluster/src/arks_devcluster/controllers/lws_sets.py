"""The objects a LeaderWorkerSet makes (kubernetes-sigs/lws leaderworkerset_controller.go,
pod_controller.go, utils/controller): the leader StatefulSet, a group's worker
StatefulSet and the headless Service.

- leader StatefulSet `<lws>`: the leader template (else the worker template) labelled
  `name`, `worker-index: "0"` and `template-revision-hash`, annotated with the group
  `size`; Parallel, selector on name and worker-index, RollingUpdate with the given
  partition and maxUnavailable = maxUnavailable + maxSurge (at least 1); its own labels
  and annotations are the set's plus name, revision and `replicas`;
- worker StatefulSet `<lws>-<group>`: size - 1 workers with ordinals from 1 (pods
  `<lws>-<group>-<n>`) of the leader's revision, owned by the leader pod (a leader's
  deletion takes its group with it), annotated with `size` and `leader-name`;
- Service: headless (`clusterIP: None`), publishing not-ready addresses.
"""

from __future__ import annotations

import copy
from typing import Any

from arks_devcluster.controllers import lws_pods as lp
from arks_devcluster.controllers.util import int_or, scaled_value
from arks_devcluster.local_client import controller_ref

Obj = dict[str, Any]


def _claims(template: Obj, spec: Obj) -> None:
    for field in ("volumeClaimTemplates", "persistentVolumeClaimRetentionPolicy"):
        if template.get(field):
            spec[field] = copy.deepcopy(template[field])


def leader_set(lws: Obj, key: str, partition: int, replicas: int) -> Obj:
    spec = lws.get("spec") or {}
    template = spec.get("leaderWorkerTemplate") or {}
    name = lws["metadata"]["name"]
    pod_template = copy.deepcopy(
        template.get("leaderTemplate") or template.get("workerTemplate") or {}
    )
    meta = pod_template.setdefault("metadata", {})
    meta["labels"] = {
        **(meta.get("labels") or {}),
        lp.WORKER_INDEX: "0",
        lp.NAME: name,
        lp.REVISION: key,
    }
    annotations = {**(meta.get("annotations") or {}), lp.SIZE: str(int_or(template.get("size"), 1))}
    if (spec.get("networkConfig") or {}).get("subdomainPolicy") == "UniquePerReplica":
        annotations[lp.SUBDOMAIN_POLICY] = "UniquePerReplica"
    meta["annotations"] = annotations
    wanted = int_or(spec.get("replicas"), 1)
    rolling = (spec.get("rolloutStrategy") or {}).get("rollingUpdateConfiguration") or {}
    surge = min(scaled_value(rolling.get("maxSurge", 0), wanted, round_up=True), wanted)
    unavailable = scaled_value(rolling.get("maxUnavailable", 1), wanted, round_up=False)
    set_spec: Obj = {
        "serviceName": name,
        "replicas": replicas,
        "podManagementPolicy": "Parallel",
        "template": pod_template,
        "updateStrategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {
                "maxUnavailable": max(unavailable + surge, 1),
                "partition": partition,
            },
        },
        "selector": {"matchLabels": {lp.NAME: name, lp.WORKER_INDEX: "0"}},
    }
    _claims(template, set_spec)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": name,
            "namespace": lws["metadata"]["namespace"],
            "labels": {**(lws["metadata"].get("labels") or {}), lp.NAME: name, lp.REVISION: key},
            "annotations": {
                **(lws["metadata"].get("annotations") or {}),
                lp.REPLICAS: str(wanted),
            },
            "ownerReferences": [controller_ref(lws)],
        },
        "spec": set_spec,
    }


def worker_set(lws: Obj, leader: Obj, template: Obj) -> Obj:
    """The worker StatefulSet of a leader pod (`template`: the leaderWorkerTemplate of
    the leader's revision)."""
    meta = lws["metadata"]
    leader_labels = leader["metadata"].get("labels") or {}
    selector = {
        lp.GROUP_INDEX: leader_labels.get(lp.GROUP_INDEX, ""),
        lp.NAME: meta["name"],
        lp.GROUP_KEY: leader_labels.get(lp.GROUP_KEY, ""),
    }
    labels = {**selector, lp.REVISION: leader_labels.get(lp.REVISION, "")}
    pod_template = copy.deepcopy(template.get("workerTemplate") or {})
    pod_meta = pod_template.setdefault("metadata", {})
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **labels}
    pod_meta["annotations"] = {
        **(pod_meta.get("annotations") or {}),
        lp.SIZE: str(int_or(template.get("size"), 1)),
        lp.LEADER_NAME: leader["metadata"]["name"],
    }
    network = (lws.get("spec") or {}).get("networkConfig") or {}
    unique = network.get("subdomainPolicy") == "UniquePerReplica"
    spec: Obj = {
        "serviceName": leader["metadata"]["name"] if unique else meta["name"],
        "replicas": int_or(template.get("size"), 1) - 1,
        "podManagementPolicy": "Parallel",
        "template": pod_template,
        "ordinals": {"start": 1},
        "selector": {"matchLabels": selector},
    }
    _claims(template, spec)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": leader["metadata"]["name"],
            "namespace": meta["namespace"],
            "labels": {**(meta.get("labels") or {}), **labels},
            "annotations": dict(meta.get("annotations") or {}),
            "ownerReferences": [controller_ref(leader)],
        },
        "spec": spec,
    }


def headless_service(lws: Obj, owner: Obj, name: str, selector: dict[str, str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": owner["metadata"]["namespace"],
            "labels": {lp.NAME: lws["metadata"]["name"]},
            "ownerReferences": [controller_ref(owner)],
        },
        "spec": {"clusterIP": "None", "selector": selector, "publishNotReadyAddresses": True},
    }
