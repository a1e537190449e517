"""ArksApplication: N replicas of one inference engine serving one ArksModel.

Differences from upstream, all additive or documented in docs/resources.md:
`replicas` defaults to 1 (upstream: 0, a known bug), negative counts are refused (upstream
clamps them), `runtime` may be `sim` (our engine simulator) and is checked at admission,
`driver` selects the workload backend, `autoscaling` is accepted (schema only for now),
and `instanceSpec` may be omitted (upstream requires it, possibly empty).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from arks_common.resources.instance import InstanceSpec, PodGroupPolicy
from arks_common.resources.meta import (
    ArksBaseModel,
    ArksResource,
    Bool,
    Int32,
    LocalObjectReference,
    ResourceStatus,
)

Runtime = Literal["vllm", "sglang", "dynamo", "sim"]
Driver = Literal["lws", "rbg", "deployment"]
AutoscalingMetric = Literal[
    "ttftP90", "tpotP90", "queueDepth", "kvCacheUsage", "requestsPerReplica"
]

DEFAULT_RUNTIME: Runtime = "vllm"


def _size_at_least_one(value: int) -> int:
    # Upstream treats size 0 as 1; normalising keeps every reader of the model agreeing.
    return value or 1


#: Pods per replica (leader + workers); 0 is accepted and means 1, as upstream.
GroupSize = Annotated[Int32, AfterValidator(_size_at_least_one)]


class ApplicationPhase(StrEnum):
    """Values of ArksApplication / ArksDisaggregatedApplication status.phase."""

    PENDING = "Pending"
    CHECKING = "Checking"
    LOADING = "Loading"
    CREATING = "Creating"
    RUNNING = "Running"
    FAILED = "Failed"


class ApplicationConditionType(StrEnum):
    """Condition types of both application kinds."""

    PRECHECK = "Precheck"
    LOADED = "Loaded"
    READY = "Ready"


class Autoscaling(ArksBaseModel):
    """Arks extension: SLO-driven autoscaling of replicas (accepted now, acted on later)."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"properties": {"enabled": {"enum": [False]}}},
                {"required": ["maxReplicas", "metric", "target"]},
            ]
        }
    )

    enabled: Bool = Field(False, description="Scale replicas automatically.")
    min_replicas: Int32 = Field(1, ge=0, description="Lowest replica count.")
    max_replicas: Int32 | None = Field(
        None, ge=0, description="Highest replica count (>= minReplicas); required when enabled."
    )
    metric: AutoscalingMetric | None = Field(
        None, description="Signal to hold at `target`; required when enabled."
    )
    target: float | None = Field(
        None,
        gt=0,
        description="Target value of the metric per replica (> 0); required when enabled.",
    )
    scale_up_stabilization_seconds: Int32 = Field(
        0, ge=0, description="Seconds a higher recommendation must persist before scaling up."
    )
    scale_down_stabilization_seconds: Int32 = Field(
        300, ge=0, description="Seconds a lower recommendation must persist before scaling down."
    )

    @model_validator(mode="after")
    def _check_bounds(self) -> Self:
        if self.max_replicas is not None and self.max_replicas < self.min_replicas:
            raise ValueError(
                f"maxReplicas: must be >= minReplicas ({self.max_replicas} < {self.min_replicas})"
            )
        if self.enabled:
            missing = [
                alias
                for alias, value in (
                    ("maxReplicas", self.max_replicas),
                    ("metric", self.metric),
                    ("target", self.target),
                )
                if value is None
            ]
            if missing:
                raise ValueError(f"{', '.join(missing)}: required when enabled is true")
        return self


class ArksApplicationSpec(ArksBaseModel):
    """Desired state of an ArksApplication."""

    replicas: Int32 = Field(
        1,
        ge=0,
        description="Number of engine replicas (each `size` pods). Arks default 1; upstream "
        "left it 0 when omitted.",
    )
    size: GroupSize = Field(
        1, ge=0, description="Pods per replica: one leader plus size-1 workers; 0 means 1."
    )
    runtime: Runtime = Field(
        DEFAULT_RUNTIME,
        description="Engine: vllm, sglang, dynamo, or sim (Arks extension: the engine simulator).",
    )
    driver: Driver | None = Field(
        None,
        description="Arks extension: workload backend (lws, rbg or deployment); the platform "
        "default when omitted.",
    )
    runtime_image: str | None = Field(
        None, description="Engine image; a per-runtime default when omitted."
    )
    runtime_image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list, description="imagePullSecrets of the engine pods."
    )
    model: LocalObjectReference = Field(description="The ArksModel to serve (same namespace).")
    served_model_name: str | None = Field(
        None,
        description="Name the engine serves (and ArksEndpoints match on); the model's name "
        "when omitted.",
    )
    tensor_parallel_size: Int32 | None = Field(
        None, ge=0, description="Tensor parallel size passed to the engine; 0 or absent omits it."
    )
    runtime_common_args: list[str] = Field(
        default_factory=list, description="Extra engine arguments, appended verbatim."
    )
    instance_spec: InstanceSpec = Field(
        default_factory=InstanceSpec,
        description="Pod pass-through settings (required upstream; optional here).",
    )
    pod_group_policy: PodGroupPolicy | None = Field(
        None, description="Gang scheduling of each replica's pods."
    )
    autoscaling: Autoscaling | None = Field(
        None, description="Arks extension: autoscaling (schema only for now)."
    )

    def served_model_name_or_default(self) -> str:
        """`servedModelName`, else the model's name (the key ArksEndpoints match on)."""
        return self.served_model_name or self.model.name


class ArksApplicationStatus(ResourceStatus):
    """Observed state of an ArksApplication."""

    phase: str = Field("", description="Pending, Checking, Loading, Creating, Running or Failed.")
    replicas: Int32 = Field(0, description="Replicas that exist.")
    ready_replicas: Int32 = Field(0, description="Replicas that are ready.")
    updated_replicas: Int32 = Field(0, description="Replicas running the current spec.")
    selector: str | None = Field(
        None,
        description="Arks extension: label selector of the engine pods (for the scale "
        "subresource).",
    )


class ArksApplication(ArksResource[ArksApplicationSpec, ArksApplicationStatus]):
    """ArksApplication is a set of engine replicas serving one model."""

    kind: Literal["ArksApplication"] = Field(
        "ArksApplication", description="Always ArksApplication."
    )

    def served_model_name_or_default(self) -> str:
        """`spec.servedModelName`, else `spec.model.name`."""
        return self.spec.served_model_name_or_default()
