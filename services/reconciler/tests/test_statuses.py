"""Phases and conditions, with upstream's bugs fixed (spec §6.5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from arks_common import resources
from arks_reconciler import statuses
from arks_reconciler.platform import (
    ModelObservation,
    ModelState,
    Problem,
    ReplicaObservation,
    ReplicaState,
    WorkloadObservation,
)
from arks_reconciler.testing import app_obj, model_obj, typed, with_status

NOW = datetime(2026, 1, 14, 10, 0, tzinfo=UTC)
READY_MODEL = typed(with_status(model_obj(), phase="Ready", path="/m"))


def replica(
    name: str, state: ReplicaState = ReplicaState.READY, **kw: object
) -> ReplicaObservation:
    return ReplicaObservation(name=name, role="inference", state=state, url="http://x", **kw)  # type: ignore[arg-type]


def status_of(app: dict[str, Any], observation: WorkloadObservation | None, **kw: object):
    return statuses.application_status(
        typed(app),
        model=kw.get("model", READY_MODEL),  # type: ignore[arg-type]
        problems=kw.get("problems", []),  # type: ignore[arg-type]
        observation=observation,
        now=NOW,
    )


def cond(status: resources.ArksApplicationStatus, type_: str) -> resources.Condition:
    found = status.condition(type_)
    assert found is not None
    return found


def test_replicas_default_to_one() -> None:
    assert typed(app_obj()).spec.replicas == 1


def test_readiness_counts_every_replica() -> None:
    obs = WorkloadObservation(replicas=tuple(replica(f"r{i}") for i in range(3)))
    status = status_of(app_obj(replicas=3), obs)
    assert (status.replicas, status.ready_replicas, status.updated_replicas) == (3, 3, 3)
    assert status.phase == "Running"
    ready = cond(status, "Ready")
    assert (ready.status, ready.reason) == ("True", "Running")


def test_partially_ready_application_serves() -> None:
    obs = WorkloadObservation(
        replicas=(
            replica("a"),
            replica("b", ReplicaState.STARTING, message="waiting for 1 GPU (0 of 1 free)"),
        )
    )
    status = status_of(app_obj(replicas=2), obs)
    assert status.phase == "Running"
    ready = cond(status, "Ready")
    assert (ready.status, ready.reason) == ("True", "PartiallyReady")
    # It says why the other replica does not serve yet.
    assert ready.message == "1/2 replicas ready; replica b: waiting for 1 GPU (0 of 1 free)"


def test_zero_replicas_is_not_ready() -> None:
    status = status_of(app_obj(replicas=0), WorkloadObservation())
    ready = cond(status, "Ready")
    assert (ready.status, ready.reason) == ("False", "ScaledToZero")
    assert status.ready_replicas == 0


def test_failed_is_recomputed_not_terminal() -> None:
    crashing = WorkloadObservation(
        replicas=(replica("a", ReplicaState.BACKOFF, restarts=2, message="exited with code 1"),)
    )
    failed = status_of(app_obj(), crashing)
    assert failed.phase == "Failed"
    assert "exited with code 1" in (cond(failed, "Ready").message or "")
    recovered_app = with_status(app_obj(), **failed.model_dump(mode="json", by_alias=True))
    recovered = status_of(recovered_app, WorkloadObservation(replicas=(replica("a"),)))
    assert recovered.phase == "Running"


def test_missing_model_then_model_loading_then_loaded() -> None:
    missing = status_of(app_obj(), None, model=None)
    assert missing.phase == "Failed"
    assert cond(missing, "Loaded").reason == "ModelNotExist"
    assert "spec.model.name" in (cond(missing, "Loaded").message or "")
    loading_model = typed(
        with_status(
            model_obj(),
            phase="ModelLoading",
            conditions=[{"type": "ModelLoaded", "status": "False", "message": "45% done"}],
        )
    )
    loading = status_of(app_obj(), None, model=loading_model)
    assert loading.phase == "Loading"
    assert "45% done" in (cond(loading, "Loaded").message or "")
    starting = status_of(
        app_obj(), WorkloadObservation(replicas=(replica("a", ReplicaState.STARTING),))
    )
    assert starting.phase == "Creating"
    assert cond(starting, "Loaded").status == "True"


def test_precheck_problems_name_the_fix() -> None:
    problem = Problem("RuntimeNotSupport", "runtime dynamo is not supported here: use sim")
    status = status_of(app_obj(), None, problems=[problem])
    assert status.phase == "Failed"
    precheck = cond(status, "Precheck")
    assert (precheck.status, precheck.reason) == ("False", "RuntimeNotSupport")
    assert cond(status, "Loaded").status == "Unknown"


def test_platform_problem_is_a_failed_ready_condition() -> None:
    obs = WorkloadObservation(problem=Problem("RuntimeNotFound", "`vllm` was not found"))
    status = status_of(app_obj(runtime="vllm"), obs)
    assert status.phase == "Failed"
    ready = cond(status, "Ready")
    assert (ready.reason, ready.message) == ("RuntimeNotFound", "`vllm` was not found")


def test_transition_time_moves_only_when_status_changes() -> None:
    obs = WorkloadObservation(replicas=(replica("a"),))
    first = status_of(app_obj(), obs)
    stored = with_status(app_obj(), **first.model_dump(mode="json", by_alias=True))
    later = statuses.application_status(
        typed(stored), model=READY_MODEL, problems=[], observation=obs, now=NOW + timedelta(hours=1)
    )
    assert cond(later, "Ready").last_transition_time == cond(first, "Ready").last_transition_time
    down = statuses.application_status(
        typed(stored),
        model=READY_MODEL,
        problems=[],
        observation=WorkloadObservation(),
        now=NOW + timedelta(hours=1),
    )
    assert cond(down, "Ready").last_transition_time == NOW + timedelta(hours=1)


def test_observed_generation_follows_the_spec() -> None:
    app = app_obj()
    app["metadata"]["generation"] = 7
    status = status_of(app, WorkloadObservation(replicas=(replica("a"),)))
    assert status.observed_generation == 7
    assert all(c.observed_generation == 7 for c in status.conditions)


def test_disaggregated_routes_through_the_entry_role() -> None:
    app = typed(
        {
            "apiVersion": "arks.ai/v1",
            "kind": "ArksDisaggregatedApplication",
            "metadata": {"name": "pd", "namespace": "default"},
            "spec": {
                "runtime": "sim",
                "model": {"name": "qwen-7b"},
                "prefill": {"replicas": 1},
                "decode": {"replicas": 2},
            },
        }
    )
    obs = WorkloadObservation(
        replicas=(
            ReplicaObservation("p", "prefill", ReplicaState.READY),
            ReplicaObservation("d1", "decode", ReplicaState.READY),
            ReplicaObservation("d2", "decode", ReplicaState.STARTING),
        ),
        entry_role="decode",
    )
    status = statuses.disaggregated_status(
        app,
        model=READY_MODEL,
        problems=[],
        observation=obs,
        entry_role="decode",
        router_runs=False,
        now=NOW,
    )
    assert status.phase == "Running"
    assert status.decode is not None
    assert status.decode.ready_replicas == 1
    assert status.prefill is not None
    assert status.prefill.ready_replicas == 1
    assert status.router is not None
    assert status.router.replicas == 0
    assert status.condition("Ready").reason == "PartiallyReady"  # type: ignore[union-attr]


def test_model_phases() -> None:
    model = typed(model_obj())
    loading = statuses.model_status(
        model, ModelObservation(ModelState.LOADING, message="Downloading x: 10%"), now=NOW
    )
    assert loading.phase == "ModelLoading"
    assert loading.condition("ModelLoaded").message == "Downloading x: 10%"  # type: ignore[union-attr]
    ready = statuses.model_status(
        model,
        ModelObservation(ModelState.READY, path="/cache/x", in_existing_storage=True),
        now=NOW,
    )
    assert ready.phase == "Ready"
    assert ready.path == "/cache/x"
    assert [c.status for c in ready.conditions] == ["True", "True", "True"]
    assert [c.type for c in ready.conditions] == ["StorageCreated", "ModelLoaded", "Ready"]
    failed = statuses.model_status(
        model, ModelObservation(ModelState.FAILED, message="not_found: no such repo"), now=NOW
    )
    assert failed.phase == "Failed"
    assert failed.condition("Ready").reason == "ModelLoadFailed"  # type: ignore[union-attr]
