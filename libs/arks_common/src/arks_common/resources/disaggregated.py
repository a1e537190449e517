"""ArksDisaggregatedApplication: prefill and decode engine roles behind a PD router (SGLang).

Upstream defaults (runtime sglang, router replicas 1 / port 8080 / metricPort 9090,
prefill/decode replicas 1 and size 1) are model defaults here. The router port's JSON key
is literally `int32` upstream (a struct-tag bug); we dump that key for compatibility and
also accept `port` (both may be given only with the same value).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, ConfigDict, Field, model_validator

from arks_common.resources.application import GroupSize
from arks_common.resources.instance import InstanceSpec, PodGroupPolicy
from arks_common.resources.meta import (
    ArksBaseModel,
    ArksResource,
    Int32,
    LocalObjectReference,
    ResourceStatus,
)

DisaggregatedRuntime = Literal["sglang", "sim"]

_PORT_DESCRIPTION = (
    "Router listen port (default 8080). The upstream JSON key is `int32`, kept for "
    "compatibility; `port` is accepted as well."
)


def _router_schema(schema: dict[str, Any]) -> None:
    props = schema["properties"]
    # No CRD default on either key: a defaulted `int32` would contradict a user's `port`.
    port = {k: v for k, v in props["int32"].items() if k != "default"}
    props["int32"] = port
    props["port"] = {**port, "description": "Arks alias of `int32`: router listen port."}


class RouterSpec(ArksBaseModel):
    """The PD router (sglang_router) in front of the prefill and decode roles."""

    model_config = ConfigDict(json_schema_extra=_router_schema)

    replicas: Int32 = Field(1, ge=0, description="Router replicas.")
    command_override: list[str] | None = Field(
        None,
        description="Replaces the router command (the generated one is in ARKS_ROUTER_COMMAND).",
    )
    port: Int32 = Field(
        8080,
        ge=1,
        le=65535,
        validation_alias=AliasChoices("int32", "port"),
        serialization_alias="int32",
        description=_PORT_DESCRIPTION,
    )
    metric_port: Int32 = Field(9090, ge=1, le=65535, description="Router Prometheus port.")
    router_args: list[str] = Field(default_factory=list, description="Extra router arguments.")
    instance_spec: InstanceSpec = Field(
        default_factory=InstanceSpec, description="Pod pass-through for the router pods."
    )

    @model_validator(mode="before")
    @classmethod
    def _one_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and "int32" in data and "port" in data:
            if data["int32"] != data["port"]:
                raise ValueError(
                    "port: given both as `port` and as `int32` (its upstream spelling) with "
                    f"different values ({data['port']!r} != {data['int32']!r}); keep one"
                )
            data = {k: v for k, v in data.items() if k != "int32"}
        return data


class DisaggregatedWorkload(ArksBaseModel):
    """One engine role (prefill or decode): replicas of leader+worker groups."""

    replicas: Int32 = Field(1, ge=0, description="Replicas of this role.")
    size: GroupSize = Field(1, ge=0, description="Pods per replica; 0 means 1.")
    leader_command_override: list[str] | None = Field(
        None, description="Replaces the leader command (generated one in ARKS_LEADER_COMMAND)."
    )
    worker_command_override: list[str] | None = Field(
        None, description="Replaces the worker command (generated one in ARKS_WORKER_COMMAND)."
    )
    runtime_common_args: list[str] = Field(
        default_factory=list, description="Extra engine arguments, e.g. --tp 2."
    )
    instance_spec: InstanceSpec = Field(
        default_factory=InstanceSpec, description="Pod pass-through for this role's pods."
    )


class ArksDisaggregatedApplicationSpec(ArksBaseModel):
    """Desired state of an ArksDisaggregatedApplication."""

    runtime: DisaggregatedRuntime = Field(
        "sglang", description="Engine: sglang, or sim (Arks extension: the engine simulator)."
    )
    router_image: str | None = Field(None, description="Router image; a default when omitted.")
    runtime_image: str | None = Field(
        None, description="Prefill/decode image; a default when omitted."
    )
    runtime_image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list, description="imagePullSecrets of every role."
    )
    model: LocalObjectReference = Field(description="The ArksModel to serve (same namespace).")
    served_model_name: str | None = Field(
        None,
        description="Name served (and matched by ArksEndpoints); the model's name when omitted.",
    )
    router: RouterSpec = Field(
        default_factory=RouterSpec,
        description="The PD router (required upstream, possibly empty; optional here).",
    )
    prefill: DisaggregatedWorkload = Field(description="Prefill role.")
    decode: DisaggregatedWorkload = Field(description="Decode role.")
    pod_group_policy: PodGroupPolicy | None = Field(
        None, description="Gang scheduling of the pods."
    )

    def served_model_name_or_default(self) -> str:
        """`servedModelName`, else the model's name."""
        return self.served_model_name or self.model.name


class WorkloadStatus(ArksBaseModel):
    """Replica counts of one role."""

    replicas: Int32 = Field(0, description="Replicas that exist.")
    ready_replicas: Int32 = Field(0, description="Replicas that are ready.")
    updated_replicas: Int32 = Field(0, description="Replicas running the current spec.")


class ArksDisaggregatedApplicationStatus(ResourceStatus):
    """Observed state of an ArksDisaggregatedApplication."""

    phase: str = Field("", description="Pending, Checking, Loading, Creating, Running or Failed.")
    router: WorkloadStatus | None = Field(None, description="Router replicas.")
    prefill: WorkloadStatus | None = Field(None, description="Prefill replicas.")
    decode: WorkloadStatus | None = Field(None, description="Decode replicas.")


class ArksDisaggregatedApplication(
    ArksResource[ArksDisaggregatedApplicationSpec, ArksDisaggregatedApplicationStatus]
):
    """ArksDisaggregatedApplication serves one model with separate prefill and decode roles."""

    kind: Literal["ArksDisaggregatedApplication"] = Field(
        "ArksDisaggregatedApplication", description="Always ArksDisaggregatedApplication."
    )

    def served_model_name_or_default(self) -> str:
        """`spec.servedModelName`, else `spec.model.name`."""
        return self.spec.served_model_name_or_default()
