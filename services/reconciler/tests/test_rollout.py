"""Rollout planning: scaling never restarts; template changes keep capacity."""

from __future__ import annotations

from arks_reconciler.local.rollout import ReplicaView, plan_rollout


def view(name: str, *, updated: bool = True, ready: bool = True, created: float = 0) -> ReplicaView:
    return ReplicaView(name, updated, ready, created)


def test_scale_up_starts_all_missing_at_once() -> None:
    step = plan_rollout(3, [view("a")])
    assert step.start == 2
    assert step.stop == ()


def test_scale_down_stops_unready_then_newest() -> None:
    replicas = [
        view("a", created=1),
        view("b", created=2),
        view("c", ready=False, created=3),
        view("d", created=4),
    ]
    step = plan_rollout(2, replicas)
    assert step.start == 0
    assert step.stop == ("c", "d")


def test_scale_to_zero_stops_everything() -> None:
    step = plan_rollout(0, [view("a"), view("b", updated=False)])
    assert sorted(step.stop) == ["a", "b"]
    assert step.start == 0


def test_template_change_surges_one_and_keeps_the_old_serving() -> None:
    old = [view("a", updated=False, created=1)]
    first = plan_rollout(1, old)
    assert (first.start, first.stop) == (1, ())
    starting = [*old, view("n", ready=False, created=2)]
    assert plan_rollout(1, starting) == plan_rollout(1, starting)
    waiting = plan_rollout(1, starting)
    assert (waiting.start, waiting.stop) == (0, ())
    done = plan_rollout(1, [*old, view("n", created=2)])
    assert (done.start, done.stop) == (0, ("a",))


def test_rollout_of_three_moves_one_at_a_time() -> None:
    old = [view(f"o{i}", updated=False, created=i) for i in range(3)]
    step = plan_rollout(3, old)
    assert (step.start, step.stop) == (1, ())
    step = plan_rollout(3, [*old, view("n0", created=10)])
    assert step.stop == ("o0",)
    assert step.start == 1


def test_old_replicas_that_are_not_ready_go_at_once() -> None:
    step = plan_rollout(2, [view("a", updated=False, ready=False), view("b", updated=False)])
    assert "a" in step.stop
    assert "b" not in step.stop
    assert step.start == 2  # b keeps serving; one surge replica beyond the desired two


def test_a_failing_new_template_never_takes_capacity_away() -> None:
    replicas = [view("o", updated=False, created=1), view("n", ready=False, created=2)]
    for _ in range(5):
        step = plan_rollout(1, replicas)
        assert step.stop == ()
        assert step.start == 0
