"""The pods and claims of a StatefulSet (stateful_set_utils.go): names, identity labels,
hostname and subdomain, volumes wired to the per-ordinal PersistentVolumeClaims, and the
revision each pod carries.

A pod is `<set>-<ordinal>` with labels `statefulset.kubernetes.io/pod-name`,
`apps.kubernetes.io/pod-index` and `controller-revision-hash` (`<set>-<hash>` of the
template), `spec.hostname` its name and `spec.subdomain` the set's serviceName. A claim
is `<template>-<set>-<ordinal>` with the template's labels and the set's matchLabels; it
is owned by the set (so deleted with it) only when
`persistentVolumeClaimRetentionPolicy.whenDeleted` is `Delete` (default `Retain`).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from arks_devcluster.controllers.pods import new_pod
from arks_devcluster.controllers.util import int_or, template_hash

Obj = dict[str, Any]
POD_NAME = "statefulset.kubernetes.io/pod-name"
POD_INDEX = "apps.kubernetes.io/pod-index"
REVISION = "controller-revision-hash"


def start(sts: Obj) -> int:
    return int_or(((sts.get("spec") or {}).get("ordinals") or {}).get("start"), 0)


def ordinal_of(sts: Obj, pod: Obj) -> int | None:
    """The ordinal in a pod's name `<set>-<n>`, or None for a name of another shape."""
    match = re.fullmatch(re.escape(sts["metadata"]["name"]) + r"-(\d+)", pod["metadata"]["name"])
    return int(match.group(1)) if match else None


def revision_name(sts: Obj) -> str:
    template = (sts.get("spec") or {}).get("template") or {}
    collisions = int_or((sts.get("status") or {}).get("collisionCount"), 0)
    return f"{sts['metadata']['name']}-{template_hash(template, collisions)}"


def revision_of(pod: Obj) -> str:
    return str((pod["metadata"].get("labels") or {}).get(REVISION, ""))


def claim_name(claim_template: Obj, sts: Obj, ordinal: int) -> str:
    return f"{claim_template['metadata']['name']}-{sts['metadata']['name']}-{ordinal}"


def new_claim(sts: Obj, claim_template: Obj, ordinal: int) -> Obj:
    meta = claim_template.get("metadata") or {}
    match_labels = ((sts.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    claim: Obj = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": claim_name(claim_template, sts, ordinal),
            "namespace": sts["metadata"]["namespace"],
            "labels": {**(meta.get("labels") or {}), **match_labels},
        },
        "spec": copy.deepcopy(claim_template.get("spec") or {}),
    }
    if meta.get("annotations"):
        claim["metadata"]["annotations"] = dict(meta["annotations"])
    policy = (sts.get("spec") or {}).get("persistentVolumeClaimRetentionPolicy") or {}
    if policy.get("whenDeleted") == "Delete":
        claim["metadata"]["ownerReferences"] = [
            {
                "apiVersion": sts["apiVersion"],
                "kind": sts["kind"],
                "name": sts["metadata"]["name"],
                "uid": sts["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return claim


def new_set_pod(sts: Obj, ordinal: int, revision: str, template: Obj) -> Obj:
    name = f"{sts['metadata']['name']}-{ordinal}"
    spec = sts.get("spec") or {}
    pod = new_pod(
        template,
        sts,
        name=name,
        labels={POD_NAME: name, POD_INDEX: str(ordinal), REVISION: revision},
    )
    pod["spec"]["hostname"] = name
    if spec.get("serviceName"):
        pod["spec"]["subdomain"] = spec["serviceName"]
    claims = spec.get("volumeClaimTemplates") or []
    if claims:
        names = {c["metadata"]["name"] for c in claims}
        volumes = [v for v in pod["spec"].get("volumes") or [] if v.get("name") not in names]
        for claim in claims:
            volumes.append(
                {
                    "name": claim["metadata"]["name"],
                    "persistentVolumeClaim": {"claimName": claim_name(claim, sts, ordinal)},
                }
            )
        pod["spec"]["volumes"] = volumes
    return pod
