"""Jobs: completions and parallelism, Indexed jobs, backoffLimit, activeDeadlineSeconds,
TTL after finishing; the test plays the kubelet. One test drives `kubectl wait`."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from arks_devcluster import FakeKubeApi
from arks_devcluster.controllers import job as job_controller
from arks_devcluster.controllers.job_pods import INDEX, format_indexes, parse_indexes
from arks_devcluster.controllers.testing import (
    eventually,
    kubelet,
    mark_finished,
    mark_running,
    pods,
    running_controllers,
)


def job(name: str = "work", **spec: Any) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox"}],
                },
            },
            **spec,
        },
    }


def get(api: FakeKubeApi, name: str = "work") -> dict:
    found = kubelet(api).get("batch", "jobs", "default", name)
    assert found is not None
    return found


def active(api: FakeKubeApi) -> list[dict]:
    return [p for p in pods(api) if (p.get("status") or {}).get("phase") in (None, "Running")]


def conditions(obj: dict) -> list[tuple[str, str, str]]:
    return [
        (c["type"], c["status"], c["reason"])
        for c in (obj.get("status") or {}).get("conditions", [])
    ]


def events(api: FakeKubeApi) -> list[tuple[str, str, str]]:
    return [
        (e["type"], e["reason"], e["message"]) for e in kubelet(api).list("", "events", "default")
    ]


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Upstream waits 10 s before replacing a failed pod; the tests do not."""
    monkeypatch.setattr(job_controller, "POD_FAILURE_BACKOFF", 0.0)


async def test_completions_with_parallelism_then_complete() -> None:
    api = FakeKubeApi()
    async with running_controllers(api):
        created = api.create(job(completions=3, parallelism=2))
        await eventually(lambda: len(active(api)) == 2)
        pod = active(api)[0]
        uid = created["metadata"]["uid"]
        assert pod["metadata"]["generateName"] == "work-"
        assert pod["metadata"]["labels"] == {
            "app": "work",
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": "work",
            "controller-uid": uid,
            "job-name": "work",
        }
        mark_running(api, pod)
        await eventually(lambda: get(api)["status"].get("ready") == 1)
        status = get(api)["status"]
        assert status["active"] == 2
        assert status["startTime"]
        assert status["uncountedTerminatedPods"] == {}
        assert status["terminating"] == 0
        for _ in range(3):
            mark_finished(api, active(api)[0])
            await asyncio.sleep(0)
            await eventually(lambda: active(api) or get(api)["status"].get("succeeded") == 3)
        finished = await eventually(lambda: (j := get(api))["status"].get("completionTime") and j)
        assert conditions(finished) == [
            ("SuccessCriteriaMet", "True", "CompletionsReached"),
            ("Complete", "True", "CompletionsReached"),
        ]
        assert finished["status"]["succeeded"] == 3
        assert "active" not in finished["status"]
        assert len(pods(api)) == 3, "finished pods stay"
        assert ("Normal", "Completed", "Job completed") in events(api)


async def test_indexed_jobs_run_one_pod_per_index() -> None:
    api = FakeKubeApi()
    async with running_controllers(api):
        api.create(job(completions=3, parallelism=3, completionMode="Indexed"))
        await eventually(lambda: len(active(api)) == 3)
        by_index = {
            p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]: p
            for p in active(api)
        }
        assert sorted(by_index) == ["0", "1", "2"]
        pod = by_index["1"]
        assert pod["metadata"]["generateName"] == "work-1-"
        assert pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == "1"
        assert pod["spec"]["hostname"] == "work-1"
        assert pod["spec"]["containers"][0]["env"] == [
            {
                "name": "JOB_COMPLETION_INDEX",
                "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX}']"}},
            }
        ]
        mark_finished(api, by_index["1"], succeeded=False)
        await eventually(lambda: len(active(api)) == 3)
        mark_finished(api, by_index["0"])
        mark_finished(api, by_index["2"])
        await eventually(lambda: get(api)["status"].get("completedIndexes") == "0,2")
        (retry,) = active(api)
        assert retry["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "1"
        mark_finished(api, retry)
        await eventually(lambda: ("Complete", "True", "CompletionsReached") in conditions(get(api)))
        assert get(api)["status"]["completedIndexes"] == "0-2"
        assert get(api)["status"]["failed"] == 1


async def test_backoff_limit_fails_the_job_and_ttl_deletes_it() -> None:
    api = FakeKubeApi()
    async with running_controllers(api):
        api.create(job(backoffLimit=1, parallelism=1, ttlSecondsAfterFinished=0))
        for attempt in (1, 2):
            await eventually(lambda: len(active(api)) == 1)
            mark_finished(api, active(api)[0], succeeded=False)
            await eventually(
                lambda a=attempt: (
                    (
                        kubelet(api).get("batch", "jobs", "default", "work")
                        or {"status": {"failed": 9}}
                    )["status"].get("failed", 0)
                    >= a
                )
            )
        await eventually(lambda: kubelet(api).get("batch", "jobs", "default", "work") is None)
        assert not pods(api), "its pods go with it"
        assert (
            "Warning",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ) in events(api)


async def test_active_deadline_fails_a_running_job() -> None:
    api = FakeKubeApi()
    async with running_controllers(api):
        api.create(job(activeDeadlineSeconds=1))
        await eventually(lambda: len(active(api)) == 1)
        mark_running(api, active(api)[0])
        failed = await eventually(
            lambda: ("Failed", "True", "DeadlineExceeded") in conditions(j := get(api)) and j
        )
        assert conditions(failed) == [
            ("FailureTarget", "True", "DeadlineExceeded"),
            ("Failed", "True", "DeadlineExceeded"),
        ]
        assert failed["status"]["failed"] == 1, "the running pod was deleted, counted failed"
        assert not pods(api)


async def test_a_suspended_job_runs_nothing_until_resumed() -> None:
    api = FakeKubeApi()
    async with running_controllers(api):
        api.create(job(suspend=True, parallelism=2, completions=2))
        await eventually(lambda: ("Suspended", "True", "JobSuspended") in conditions(get(api)))
        assert not pods(api)
        assert "startTime" not in get(api)["status"]
        resumed = get(api)
        resumed["spec"]["suspend"] = False
        kubelet(api).update(resumed)
        await eventually(lambda: len(active(api)) == 2)
        await eventually(lambda: ("Suspended", "False", "JobResumed") in conditions(get(api)))


def test_completed_indexes_in_upstream_interval_form() -> None:
    assert format_indexes({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert parse_indexes("0-2,5,7-8") == {0, 1, 2, 5, 7, 8}
    assert parse_indexes("") == set()


async def test_kubectl_wait_for_a_job_to_complete(cluster: Any) -> None:
    api = cluster.api
    async with running_controllers(api):
        api.create(job("once"))
        await eventually(lambda: len(active(api)) == 1)
        waiting = asyncio.create_task(
            cluster.kubectl.run("wait", "--for=condition=complete", "job/once", "--timeout=30s")
        )
        mark_finished(api, active(api)[0])
        result = await waiting
        assert result.code == 0, result.err
        assert "job.batch/once condition met" in result.out
