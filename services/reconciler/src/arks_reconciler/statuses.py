"""Status builders: phase, counts and conditions from spec and observations, purely.

Upstream's phases and condition types are kept (ArksModel: StorageCreated, ModelLoaded,
Ready; both application kinds: Precheck, Loaded, Ready) with its known bugs fixed
(spec §6.5):

- readiness counts every replica, and an application is Ready (and routed) as soon as one
  replica serves: `Running` when all are ready, `PartiallyReady` otherwise;
- `Failed` is a report, not a terminal state: every reconcile recomputes the phase from
  the current spec, model and workload, so a fixed model or a recovered replica brings
  the application back without deleting it;
- `replicas: 0` is `Ready=False/ScaledToZero`, never "ready and routed";
- Ready means serving (a replica passed its health check), not "objects were created".

Conditions not evaluated yet (a later check waits for an earlier one) are `Unknown`.
`lastTransitionTime` moves only when a condition's status changes (`set_condition`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from arks_common import resources
from arks_common.resources import Condition, ConditionStatus
from arks_reconciler.platform import (
    ModelObservation,
    ModelState,
    Problem,
    ReplicaObservation,
    ReplicaState,
    WorkloadObservation,
)

APP = resources.ApplicationConditionType
MODEL = resources.ModelConditionType
READY = "Ready"
REFERENCES_RESOLVED = "ReferencesResolved"
GATEWAY_ROUTED = "GatewayRouted"


@dataclass(frozen=True)
class Cond:
    """A condition before timestamps are decided."""

    type: str
    status: ConditionStatus
    reason: str
    message: str


def merge_conditions(
    previous: Sequence[Condition], desired: Sequence[Cond], *, generation: int | None, now: datetime
) -> list[Condition]:
    """`desired` in its order, keeping transition times of unchanged statuses."""
    result: list[Condition] = []
    for cond in desired:
        new = Condition(
            type=cond.type,
            status=cond.status,
            reason=cond.reason,
            message=cond.message,
            observed_generation=generation,
        )
        prior = resources.find_condition(previous, cond.type)
        merged = resources.set_condition([prior] if prior else [], new, now=now)
        result.append(merged[0])
    return result


# --------------------------------------------------------------------------- applications


@dataclass(frozen=True)
class RoleCounts:
    replicas: int
    ready: int
    updated: int

    @classmethod
    def of(cls, replicas: Sequence[ReplicaObservation]) -> RoleCounts:
        return cls(
            replicas=len(replicas),
            ready=sum(1 for r in replicas if r.ready),
            updated=sum(1 for r in replicas if r.updated),
        )


@dataclass(frozen=True)
class WorkloadVerdict:
    """Phase and conditions of either application kind."""

    phase: resources.ApplicationPhase
    conditions: tuple[Cond, ...]


def _unknown(type_: str, waiting_for: str) -> Cond:
    return Cond(type_, "Unknown", "NotChecked", f"waiting for {waiting_for}")


def _model_message(model: resources.ArksModel) -> str:
    status = model.status
    if status is None:
        return ""
    for type_ in (MODEL.MODEL_LOADED, MODEL.STORAGE_CREATED, MODEL.READY):
        cond = status.condition(type_)
        if cond is not None and cond.status != "True" and cond.message:
            return cond.message
    return ""


def _replica_trouble(replicas: Sequence[ReplicaObservation]) -> ReplicaObservation | None:
    crashing = [r for r in replicas if r.state is ReplicaState.BACKOFF and r.restarts > 0]
    return crashing[0] if crashing else None


def workload_verdict(
    *,
    kind_label: str,
    model_name: str,
    model: resources.ArksModel | None,
    problems: Sequence[Problem],
    observation: WorkloadObservation | None,
    desired: dict[str, int],
    entry_role: str,
) -> WorkloadVerdict:
    """The phase and conditions of an application, from everything the core knows."""
    phase = resources.ApplicationPhase
    if problems:
        message = "; ".join(p.message for p in problems)
        return WorkloadVerdict(
            phase.FAILED,
            (
                Cond(APP.PRECHECK, "False", problems[0].reason, message),
                _unknown(APP.LOADED, "Precheck"),
                Cond(APP.READY, "False", "PrecheckFailed", message),
            ),
        )
    precheck = Cond(APP.PRECHECK, "True", "PrecheckPass", f"The {kind_label} passed its checks")
    if model is None:
        message = (
            f"ArksModel {model_name!r} does not exist in this namespace: create it or fix "
            "spec.model.name"
        )
        return WorkloadVerdict(
            phase.FAILED,
            (
                precheck,
                Cond(APP.LOADED, "False", "ModelNotExist", message),
                Cond(APP.READY, "False", "ModelNotExist", message),
            ),
        )
    model_phase = model.status.phase if model.status else ""
    if model_phase == resources.ModelPhase.FAILED:
        detail = _model_message(model) or "see the ArksModel's conditions"
        message = f"ArksModel {model_name!r} failed to load: {detail}"
        return WorkloadVerdict(
            phase.FAILED,
            (
                precheck,
                Cond(APP.LOADED, "False", "ModelLoadFailed", message),
                Cond(APP.READY, "False", "ModelLoadFailed", message),
            ),
        )
    if model_phase != resources.ModelPhase.READY:
        detail = _model_message(model)
        message = f"Waiting for ArksModel {model_name!r}" + (f": {detail}" if detail else "")
        return WorkloadVerdict(
            phase.LOADING,
            (
                precheck,
                Cond(APP.LOADED, "False", "ModelLoading", message),
                Cond(APP.READY, "False", "ModelLoading", message),
            ),
        )
    loaded = Cond(APP.LOADED, "True", "ModelLoadSucceeded", f"ArksModel {model_name!r} is ready")
    observation = observation or WorkloadObservation(entry_role=entry_role)
    if observation.problem is not None:
        problem = observation.problem
        return WorkloadVerdict(
            phase.FAILED,
            (precheck, loaded, Cond(APP.READY, "False", problem.reason, problem.message)),
        )
    entry = observation.of_role(entry_role)
    entry_counts = RoleCounts.of(entry)
    wanted_entry = desired.get(entry_role, 0)
    total_wanted = sum(desired.values())
    total = RoleCounts.of(observation.replicas)
    summary = f"{entry_counts.ready}/{wanted_entry} replicas ready"
    if len(desired) > 1:
        summary = ", ".join(
            f"{role} {RoleCounts.of(observation.of_role(role)).ready}/{count}"
            for role, count in desired.items()
        )
        summary += " ready"
    if wanted_entry == 0:
        message = f"{entry_role} replicas is 0: nothing serves this {kind_label}"
        if entry_role == "inference":
            message = f"spec.replicas is 0: nothing serves this {kind_label}"
        return WorkloadVerdict(
            phase.RUNNING, (precheck, loaded, Cond(APP.READY, "False", "ScaledToZero", message))
        )
    if entry_counts.ready > 0:
        complete = (
            total.ready >= total_wanted
            and total.updated == total.replicas
            and total.replicas == total_wanted
        )
        reason = "Running" if complete else "PartiallyReady"
        message = summary
        if not complete:  # why the others do not serve yet (a GPU to wait for, a pull)
            waiting = next(
                (
                    f"replica {r.name}: {r.message}"
                    for r in observation.replicas
                    if r.state is not ReplicaState.READY and r.message
                ),
                "",
            )
            message += f"; {waiting}" if waiting else ""
        return WorkloadVerdict(
            phase.RUNNING, (precheck, loaded, Cond(APP.READY, "True", reason, message))
        )
    trouble = _replica_trouble(observation.replicas)
    if trouble is not None:
        message = f"{summary}; replica {trouble.name}: {trouble.message}"
        return WorkloadVerdict(
            phase.FAILED, (precheck, loaded, Cond(APP.READY, "False", "ReplicaFailed", message))
        )
    waiting = next((r.message for r in entry if r.message), "")
    message = summary + (f"; {waiting}" if waiting else "")
    return WorkloadVerdict(
        phase.CREATING, (precheck, loaded, Cond(APP.READY, "False", "ReplicasNotReady", message))
    )


def application_status(
    app: resources.ArksApplication,
    *,
    model: resources.ArksModel | None,
    problems: Sequence[Problem],
    observation: WorkloadObservation | None,
    now: datetime,
) -> resources.ArksApplicationStatus:
    verdict = workload_verdict(
        kind_label="application",
        model_name=app.spec.model.name,
        model=model,
        problems=problems,
        observation=observation,
        desired={"inference": max(app.spec.replicas, 0)},
        entry_role="inference",
    )
    counts = RoleCounts.of(observation.replicas if observation else ())
    previous = app.status.conditions if app.status else []
    generation = app.metadata.generation
    return resources.ArksApplicationStatus(
        phase=verdict.phase,
        replicas=counts.replicas,
        ready_replicas=counts.ready,
        updated_replicas=counts.updated,
        selector=f"arks.ai/application={app.name}",
        observed_generation=generation,
        conditions=merge_conditions(previous, verdict.conditions, generation=generation, now=now),
    )


def disaggregated_status(
    app: resources.ArksDisaggregatedApplication,
    *,
    model: resources.ArksModel | None,
    problems: Sequence[Problem],
    observation: WorkloadObservation | None,
    entry_role: str,
    router_runs: bool,
    now: datetime,
) -> resources.ArksDisaggregatedApplicationStatus:
    spec = app.spec
    desired = {"prefill": spec.prefill.replicas, "decode": spec.decode.replicas}
    if router_runs:
        desired = {"router": spec.router.replicas, **desired}
    verdict = workload_verdict(
        kind_label="disaggregated application",
        model_name=spec.model.name,
        model=model,
        problems=problems,
        observation=observation,
        desired=desired,
        entry_role=entry_role,
    )

    def role(name: str) -> resources.WorkloadStatus:
        counts = RoleCounts.of(observation.of_role(name) if observation else ())
        return resources.WorkloadStatus(
            replicas=counts.replicas, ready_replicas=counts.ready, updated_replicas=counts.updated
        )

    previous = app.status.conditions if app.status else []
    generation = app.metadata.generation
    return resources.ArksDisaggregatedApplicationStatus(
        phase=verdict.phase,
        router=role("router"),
        prefill=role("prefill"),
        decode=role("decode"),
        observed_generation=generation,
        conditions=merge_conditions(previous, verdict.conditions, generation=generation, now=now),
    )


# --------------------------------------------------------------------------- models


def model_status(
    model: resources.ArksModel, observation: ModelObservation, *, now: datetime
) -> resources.ArksModelStatus:
    phase = resources.ModelPhase
    state = observation.state
    storage_msg = "Model storage is ready" + (
        f" ({observation.storage})" if observation.storage else ""
    )
    storage_ok = Cond(MODEL.STORAGE_CREATED, "True", "CreateSucceeded", storage_msg)
    if state is ModelState.STORAGE_FAILED:
        conds = (
            Cond(MODEL.STORAGE_CREATED, "False", "CreateFailed", observation.message),
            _unknown(MODEL.MODEL_LOADED, "StorageCreated"),
            Cond(MODEL.READY, "False", "CreateFailed", observation.message),
        )
        new_phase = phase.FAILED
    elif state is ModelState.FAILED:
        conds = (
            storage_ok,
            Cond(MODEL.MODEL_LOADED, "False", "ModelLoadFailed", observation.message),
            Cond(MODEL.READY, "False", "ModelLoadFailed", observation.message),
        )
        new_phase = phase.FAILED
    elif state is ModelState.LOADING:
        message = observation.message or "The model is loading now"
        conds = (
            storage_ok,
            Cond(MODEL.MODEL_LOADED, "False", "ModelLoading", message),
            Cond(MODEL.READY, "False", "ModelLoading", message),
        )
        new_phase = phase.MODEL_LOADING
    else:
        loaded = (
            "The model is in existing storage"
            if observation.in_existing_storage
            else "Load the model successfully"
        )
        if observation.message:
            loaded = f"{loaded} ({observation.message})"
        conds = (
            storage_ok,
            Cond(MODEL.MODEL_LOADED, "True", "ModelLoadSucceeded", loaded),
            Cond(MODEL.READY, "True", "Ready", "The model is ready now"),
        )
        new_phase = phase.READY
    previous = model.status.conditions if model.status else []
    generation = model.metadata.generation
    keep_path = state is not ModelState.READY and model.status is not None
    return resources.ArksModelStatus(
        phase=new_phase,
        path=observation.path or (model.status.path if keep_path and model.status else None),
        resolved_revision=observation.resolved_revision,
        size_bytes=observation.size_bytes,
        observed_generation=generation,
        conditions=merge_conditions(previous, conds, generation=generation, now=now),
    )


# --------------------------------------------------------------------------- others


def simple_conditions(
    previous: Sequence[Condition], desired: Sequence[Cond], *, generation: int | None, now: datetime
) -> list[Condition]:
    """Conditions of the kinds without a phase (endpoints, tokens, quotas)."""
    return merge_conditions(previous, desired, generation=generation, now=now)
