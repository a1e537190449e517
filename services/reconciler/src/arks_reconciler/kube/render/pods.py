"""Pod templates: the whole `instanceSpec` passed through, plus what Arks adds.

Every field of upstream's ArksInstanceSpec (spec §1.2) lands in the pod: the pod-level
ones in the pod spec (`podSecurityContext` becomes the pod's `securityContext`), the
container-level ones (`securityContext`, `resources`, `env`, `volumeMounts`, the three
probes and `lifecycle`) on the main container, `labels`/`annotations` on the template's
metadata. Upstream drops `lifecycle` everywhere and `startupProbe`/`securityContext` on
some paths; we drop nothing. Arks' labels are written after the user's, so a user label
can never impersonate a leader or another application.

The model's PVC is mounted read-only at `/models` as volume `models` (the names the
`instanceSpec` validation reserves).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, Final

from arks_common import resources
from arks_reconciler.kube import objects
from arks_reconciler.kube.objects import Obj

POD_FIELDS: Final = (
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    "dnsPolicy",
    "dnsConfig",
    "automountServiceAccountToken",
    "nodeName",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "shareProcessNamespace",
    "subdomain",
    "hostAliases",
    "priorityClassName",
    "priority",
    "runtimeClassName",
    "enableServiceLinks",
    "preemptionPolicy",
    "overhead",
    "topologySpreadConstraints",
    "setHostnameAsFQDN",
    "os",
    "hostUsers",
    "schedulingGates",
    "resourceClaims",
    "nodeSelector",
    "affinity",
    "schedulerName",
    "tolerations",
    "serviceAccountName",
    "initContainers",
)
"""instanceSpec fields copied to the pod spec under the same name."""
CONTAINER_FIELDS: Final = (
    "securityContext",
    "resources",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
)
"""instanceSpec fields copied to the main container (env and volumeMounts are merged)."""
PROBES: Final = ("livenessProbe", "readinessProbe", "startupProbe")


def instance_fields(instance: resources.InstanceSpec) -> dict[str, Any]:
    """The instanceSpec as set by the user, camelCase (absent fields stay absent)."""
    return instance.model_dump(by_alias=True, exclude_none=True, mode="json")


def models_volume(model: resources.ArksModel) -> Obj | None:
    """Volume `models` on the model's PVC; None when the model has no PVC storage."""
    storage = model.spec.storage
    if storage is None or storage.pvc is None:
        return None
    claim = storage.pvc.name or model.name
    return {"name": objects.MODELS_VOLUME, "persistentVolumeClaim": {"claimName": claim}}


def container(
    name: str,
    image: str,
    command: list[str],
    instance: Mapping[str, Any],
    *,
    env_first: Sequence[Obj] = (),
    env_last: Sequence[Obj] = (),
    ports: Sequence[Obj] = (),
    probes: bool = True,
    default_probes: Mapping[str, Obj] | None = None,
    models_mount: bool,
    read_only: bool = True,
) -> Obj:
    """The main container of a pod: image, command, and the container-level pass-through.

    `probes=False` leaves the user's probes out (worker pods do not listen); the
    `default_probes` apply where the user gave none.
    """
    out: Obj = {"name": name, "image": image, "command": list(command)}
    env = [*env_first, *(instance.get("env") or []), *env_last]
    if env:
        out["env"] = env
    if ports:
        out["ports"] = list(ports)
    for key in CONTAINER_FIELDS:
        if key in PROBES and not probes:
            continue
        if key in instance:
            out[key] = instance[key]
        elif probes and default_probes and key in default_probes:
            out[key] = copy.deepcopy(default_probes[key])
    mounts: list[Obj] = []
    if models_mount:
        mount: Obj = {"name": objects.MODELS_VOLUME, "mountPath": objects.MODELS_MOUNT}
        if read_only:
            mount["readOnly"] = True
        mounts.append(mount)
    mounts += instance.get("volumeMounts") or []
    if mounts:
        out["volumeMounts"] = mounts
    out["terminationMessagePolicy"] = "FallbackToLogsOnError"
    return out


def pod_template(
    instance: Mapping[str, Any],
    main: Obj,
    *,
    labels: Mapping[str, str],
    model_volume: Obj | None,
    pull_secrets: Sequence[resources.LocalObjectReference],
    annotations: Mapping[str, str] | None = None,
    pod_overrides: Mapping[str, Any] | None = None,
) -> Obj:
    """A PodTemplateSpec around `main`: user labels, then Arks' `labels`; the pod-level
    pass-through; `pod_overrides` for fields Arks sets when the user did not."""
    meta: Obj = {"labels": {**(instance.get("labels") or {}), **labels}}
    notes = {**(annotations or {}), **(instance.get("annotations") or {})}
    if notes:
        meta["annotations"] = notes
    spec: Obj = {}
    for key, value in (pod_overrides or {}).items():
        if key not in instance:
            spec[key] = value
    for key in POD_FIELDS:
        if key in instance:
            spec[key] = instance[key]
    if "podSecurityContext" in instance:
        spec["securityContext"] = instance["podSecurityContext"]
    if pull_secrets:
        spec["imagePullSecrets"] = [{"name": s.name} for s in pull_secrets]
    spec["containers"] = [main]
    volumes = ([model_volume] if model_volume else []) + list(instance.get("volumes") or [])
    if volumes:
        spec["volumes"] = volumes
    return {"metadata": meta, "spec": dict(sorted(spec.items()))}
