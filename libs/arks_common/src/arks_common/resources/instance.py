"""The pod pass-through block `instanceSpec` and the gang-scheduling `podGroupPolicy`.

Kubernetes core types (resources, affinity, probes, volumes, ...) are carried verbatim as
dicts: the CRD renders them as objects that preserve unknown fields, and the reconciler's
rendered pods are validated against the real Kubernetes schemas where they are used.
The one rule checked here is Arks' own: the volume name `models` and the mount path
`/models` are reserved for the model storage, on every kind (upstream checks it on the
engine pods only; reserving it everywhere keeps one rule).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, WithJsonSchema

from arks_common.resources.meta import (
    MODELS_MOUNT_PATH,
    MODELS_VOLUME_NAME,
    ArksBaseModel,
    Bool,
    Int32,
    Int64,
    KubeObject,
    KubeObjectList,
    StringMap,
)

_MOUNT_PATH_RESERVED = r"^/models/*$"


def _check_volume(volume: dict[str, Any]) -> dict[str, Any]:
    name = volume.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("name: required (a volume needs a name)")
    if name == MODELS_VOLUME_NAME:
        raise ValueError(
            f"name: {MODELS_VOLUME_NAME!r} is reserved for the model volume Arks mounts; "
            "choose another name"
        )
    return volume


def _check_volume_mount(mount: dict[str, Any]) -> dict[str, Any]:
    name, path = mount.get("name"), mount.get("mountPath")
    if not isinstance(name, str) or not name:
        raise ValueError("name: required (the volume to mount)")
    if not isinstance(path, str) or not path:
        raise ValueError("mountPath: required")
    if path.rstrip("/") == MODELS_MOUNT_PATH:
        raise ValueError(
            f"mountPath: {MODELS_MOUNT_PATH!r} is reserved: Arks mounts the model there; "
            "choose another path"
        )
    return mount


Volume = Annotated[
    dict[str, Any],
    AfterValidator(_check_volume),
    WithJsonSchema(
        {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "required": ["name"],
            "properties": {
                "name": {
                    "type": "string",
                    "description": f"Volume name; {MODELS_VOLUME_NAME!r} is reserved.",
                    "not": {"enum": [MODELS_VOLUME_NAME]},
                }
            },
        }
    ),
]

VolumeMount = Annotated[
    dict[str, Any],
    AfterValidator(_check_volume_mount),
    WithJsonSchema(
        {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "required": ["mountPath", "name"],
            "properties": {
                "mountPath": {
                    "type": "string",
                    "description": f"Mount path; {MODELS_MOUNT_PATH!r} is reserved.",
                    "not": {"pattern": _MOUNT_PATH_RESERVED},
                },
                "name": {"type": "string"},
            },
        }
    ),
]


def _k(description: str) -> Any:
    return Field(None, description=description)


class InstanceSpec(ArksBaseModel):
    """Pod pass-through settings (upstream ArksInstanceSpec); every field is optional.

    Absent fields stay absent in the rendered pods. Upstream marks these fields immutable
    without enforcing it; neither do we.
    """

    termination_grace_period_seconds: Int64 | None = _k("Pod terminationGracePeriodSeconds.")
    active_deadline_seconds: Int64 | None = _k("Pod activeDeadlineSeconds.")
    dns_policy: str | None = _k("Pod dnsPolicy.")
    dns_config: KubeObject | None = _k("Pod dnsConfig (PodDNSConfig).")
    automount_service_account_token: Bool | None = _k("Pod automountServiceAccountToken.")
    node_name: str | None = _k("Pod nodeName.")
    host_network: Bool | None = _k("Pod hostNetwork.")
    host_pid: Bool | None = Field(None, alias="hostPID", description="Pod hostPID.")
    host_ipc: Bool | None = Field(None, alias="hostIPC", description="Pod hostIPC.")
    share_process_namespace: Bool | None = _k("Pod shareProcessNamespace.")
    pod_security_context: KubeObject | None = _k("Pod securityContext (PodSecurityContext).")
    subdomain: str | None = _k("Pod subdomain.")
    host_aliases: KubeObjectList | None = _k("Pod hostAliases.")
    priority_class_name: str | None = _k("Pod priorityClassName.")
    priority: Int32 | None = _k("Pod priority.")
    runtime_class_name: str | None = _k("Pod runtimeClassName.")
    enable_service_links: Bool | None = _k("Pod enableServiceLinks.")
    preemption_policy: str | None = _k("Pod preemptionPolicy.")
    overhead: KubeObject | None = _k("Pod overhead (a ResourceList).")
    topology_spread_constraints: KubeObjectList | None = _k("Pod topologySpreadConstraints.")
    set_hostname_as_fqdn: Bool | None = Field(
        None, alias="setHostnameAsFQDN", description="Pod setHostnameAsFQDN."
    )
    os: KubeObject | None = _k("Pod os (PodOS).")
    host_users: Bool | None = _k("Pod hostUsers.")
    scheduling_gates: KubeObjectList | None = _k("Pod schedulingGates.")
    resource_claims: KubeObjectList | None = _k("Pod resourceClaims.")
    security_context: KubeObject | None = _k("Engine container securityContext.")
    resources: KubeObject | None = _k(
        "Engine container resources (ResourceRequirements), e.g. nvidia.com/gpu limits."
    )
    labels: StringMap | None = _k("Extra labels on the pod template.")
    annotations: StringMap | None = _k("Extra annotations on the pod template.")
    env: KubeObjectList | None = _k("Engine container env (EnvVar list).")
    volume_mounts: list[VolumeMount] | None = _k(
        f"Engine container volumeMounts; the path {MODELS_MOUNT_PATH!r} is reserved."
    )
    volumes: list[Volume] | None = _k(f"Pod volumes; the name {MODELS_VOLUME_NAME!r} is reserved.")
    node_selector: StringMap | None = _k("Pod nodeSelector.")
    affinity: KubeObject | None = _k("Pod affinity.")
    scheduler_name: str | None = _k("Pod schedulerName.")
    tolerations: KubeObjectList | None = _k("Pod tolerations.")
    liveness_probe: KubeObject | None = _k("Engine container livenessProbe.")
    readiness_probe: KubeObject | None = _k("Engine container readinessProbe.")
    startup_probe: KubeObject | None = _k("Engine container startupProbe.")
    lifecycle: KubeObject | None = _k(
        "Engine container lifecycle hooks (accepted; upstream never wires them)."
    )
    service_account_name: str | None = _k("Pod serviceAccountName.")
    init_containers: KubeObjectList | None = _k("Pod initContainers.")


class KubeScheduling(ArksBaseModel):
    """scheduler-plugins coscheduling settings."""

    schedule_timeout_seconds: Int32 = Field(
        60, description="Seconds the gang may wait to be scheduled as a whole."
    )


class VolcanoScheduling(ArksBaseModel):
    """Volcano gang-scheduling settings."""

    priority_class_name: str | None = Field(None, description="Volcano PodGroup priority class.")
    queue: str | None = Field(None, description="Volcano queue.")


class PodGroupPolicy(ArksBaseModel):
    """Gang scheduling of a replica's pods; set at most one member (unchecked, as upstream)."""

    kube_scheduling: KubeScheduling | None = Field(None, description="Coscheduling plugin.")
    volcano_scheduling: VolcanoScheduling | None = Field(None, description="Volcano.")
