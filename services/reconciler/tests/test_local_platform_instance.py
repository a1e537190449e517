"""The local platform honours instanceSpec where it means something on one machine: GPUs
(CUDA_VISIBLE_DEVICES), env valueFrom.fieldRef, probes; and refuses what it cannot do.

End to end with real NATS, the reconciler service and real engine-sim processes; the
machine's GPUs are the setting ARKS_LOCAL__GPUS (this machine has none)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from arks_common import messaging
from arks_common.store import ResourceStore
from arks_reconciler.local import instance
from arks_reconciler.local.gpus import GpuPool, Shortage
from arks_reconciler.local.instance import LocalSpec, Probe
from arks_reconciler.testing import (
    InProcessReconciler,
    app_obj,
    eventually,
    make_settings,
    model_obj,
    replica_records,
    typed,
)

GPU = {"limits": {"nvidia.com/gpu": 1}}


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode() for k, v in pairs}


async def status_of(store: ResourceStore, name: str) -> dict[str, Any]:
    obj = await store.get("ArksApplication", "default", name)
    return (obj or {}).get("status") or {}


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


async def records_of(bus: messaging.Bus, owner: str, count: int) -> list[Any] | None:
    found = [r for r in await replica_records(bus) if r.owner == owner]
    return sorted(found, key=lambda r: r.name) if len(found) == count else None


@pytest.fixture
async def gpu_reconciler(
    nats_server: Any, data_dir: Path
) -> AsyncIterator[tuple[InProcessReconciler, Any]]:
    """A reconciler on a machine with GPUs 0 and 1 whose replicas outlive it (adoption)."""

    def start() -> InProcessReconciler:
        return InProcessReconciler(make_settings(nats_server.url, data_dir, gpus=["0", "1"]))

    running = start()
    await running.start()
    holder = {"running": running}
    try:
        yield running, (holder, start)
    finally:
        await holder["running"].stop()


# ------------------------------------------------------------------ pure parts


def test_gpu_pool_exclusive_shared_and_shortage() -> None:
    pool = GpuPool(None, discover=lambda: ["0", "1", "2"])
    assert pool.inventory == ("0", "1", "2")
    assert pool.allocate("a", 2, shared=False) == ("0", "1")
    assert pool.allocate("a", 2, shared=False) == ("0", "1")  # stable for its holder
    short = pool.allocate("b", 2, shared=False)
    assert isinstance(short, Shortage)
    assert short.message == ("waiting for GPUs: needs 2 GPUs, 1 free (2) of the 3 this machine has")
    assert pool.allocate("s1", 1, shared=True) == ("2",)
    assert pool.allocate("s2", 1, shared=True) == ("2",)  # shares with a sharer only
    assert isinstance(pool.allocate("c", 1, shared=False), Shortage)
    pool.release("a")
    assert pool.allocate("c", 1, shared=False) == ("0",)
    assert GpuPool([]).inventory == ()


def test_instance_spec_parsing() -> None:
    spec = typed(
        app_obj(
            instanceSpec={
                "resources": {"requests": {"nvidia.com/gpu": "2"}},
                "env": [
                    {"name": "PLAIN", "value": "x"},
                    {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {
                        "name": "OPT",
                        "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": True}},
                    },
                ],
                "readinessProbe": {
                    "httpGet": {"path": "ping", "port": 8080},
                    "periodSeconds": 2,
                    "successThreshold": 2,
                },
                "livenessProbe": {"tcpSocket": {"port": "http"}, "failureThreshold": 5},
                "startupProbe": {"exec": {"command": ["true"]}, "initialDelaySeconds": 1},
            }
        )
    )
    local, problems = instance.local_spec(spec.spec.instance_spec, "spec.instanceSpec", share=True)
    assert problems == []
    assert local == LocalSpec(
        gpus=2,
        share_gpus=True,
        field_env=(("ME", "metadata.name"), ("NODE", "spec.nodeName")),
        readiness=Probe(kind="http", path="/ping", period=2.0, success_threshold=2),
        liveness=Probe(kind="tcp", failure_threshold=5),
        startup=Probe(kind="exec", command=("true",), initial_delay=1.0),
    )
    assert local.fingerprint("abc") != "abc"
    assert LocalSpec().fingerprint("abc") == "abc"  # nothing local: the template's hash


def test_unresolvable_fields_are_refused_with_the_variable_named() -> None:
    spec = typed(
        app_obj(
            instanceSpec={
                "env": [
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "cpu"}}},
                ],
                "volumes": [{"name": "data", "emptyDir": {}}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "initContainers": [{"name": "init", "image": "busybox"}],
                "readinessProbe": {"grpc": {"port": 9000}},
            }
        )
    )
    _, problems = instance.local_spec(spec.spec.instance_spec, "spec.instanceSpec", share=False)
    messages = "\n".join(p.message for p in problems)
    assert "spec.instanceSpec.env TOKEN: secretKeyRef cannot be resolved" in messages
    assert "spec.instanceSpec.env CPU" in messages
    assert "spec.instanceSpec.volumes is not used on the local platform" in messages
    assert "spec.instanceSpec.volumeMounts" in messages
    assert "spec.instanceSpec.initContainers" in messages
    assert "grpc probes are not supported" in messages
    assert {p.reason for p in problems} == {"NotSupportedLocally"}


# ------------------------------------------------------------------ end to end


async def test_gpus_env_and_probes_on_real_replicas(
    gpu_reconciler: tuple[InProcessReconciler, Any], bus: messaging.Bus, store: ResourceStore
) -> None:
    _, (holder, start) = gpu_reconciler
    await store.apply(model_obj())
    await store.apply(
        app_obj(
            "gpu-a",
            replicas=2,
            instanceSpec={
                "resources": GPU,
                "env": [
                    {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {
                        "name": "MY_NS",
                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                    },
                    {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {
                        "name": "MAYBE",
                        "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": True}},
                    },
                ],
                "readinessProbe": {
                    "httpGet": {"path": "/ping", "port": "http"},
                    "periodSeconds": 1,
                },
            },
        )
    )

    async def running(name: str, ready: int) -> dict[str, Any] | None:
        status = await status_of(store, name)
        return status if status.get("readyReplicas") == ready else None

    await eventually(lambda: running("gpu-a", 2), within=30, what="gpu-a has 2 ready replicas")
    records = await eventually(lambda: records_of(bus, "gpu-a", 2), what="2 records")
    envs = [environ(r.pid) for r in records]
    assert sorted(e["CUDA_VISIBLE_DEVICES"] for e in envs) == ["0", "1"]  # never shared
    assert sorted(tuple(r.gpus) for r in records) == [("0",), ("1",)]
    for record, env in zip(records, envs, strict=True):
        assert env["MY_NAME"] == record.name
        assert env["MY_NS"] == "default"
        assert env["MY_IP"] == "127.0.0.1"
        assert "MAYBE" not in env
        assert env["CUDA_VISIBLE_DEVICES"] == record.gpus[0]

    # Not enough GPUs: the replica does not start and the condition says why.
    await store.apply(app_obj("gpu-b", instanceSpec={"resources": GPU}))

    async def waiting() -> dict[str, Any] | None:
        ready = condition(await status_of(store, "gpu-b"), "Ready")
        return ready if "needs 1 GPU, 0 free" in ready.get("message", "") else None

    ready = await eventually(waiting, what="gpu-b waits for a GPU")
    assert ready["status"] == "False"
    assert await records_of(bus, "gpu-b", 0) == []

    # A reconciler restart adopts the replicas with their GPUs; gpu-b still waits.
    await holder["running"].stop()
    holder["running"] = start()
    await holder["running"].start()
    await eventually(lambda: running("gpu-a", 2), within=30, what="gpu-a adopted")
    again = await eventually(lambda: records_of(bus, "gpu-a", 2), what="records kept")
    assert [(r.pid, r.gpus) for r in again] == [(r.pid, r.gpus) for r in records]
    await asyncio.sleep(1.0)
    assert "needs 1 GPU, 0 free" in condition(await status_of(store, "gpu-b"), "Ready")["message"]

    # Scaling gpu-a down releases a GPU, which gpu-b then gets.
    await store.apply(app_obj("gpu-a", replicas=1, instanceSpec={"resources": GPU}))
    await eventually(lambda: running("gpu-b", 1), within=30, what="gpu-b gets the freed GPU")
    (b,) = await eventually(lambda: records_of(bus, "gpu-b", 1), what="gpu-b record")
    (a,) = await eventually(lambda: records_of(bus, "gpu-a", 1), what="gpu-a scaled to 1")
    assert {b.gpus[0], a.gpus[0]} == {"0", "1"}
    assert environ(b.pid)["CUDA_VISIBLE_DEVICES"] == b.gpus[0]


async def test_readiness_probe_on_a_custom_path_gates_traffic(
    gpu_reconciler: tuple[InProcessReconciler, Any], store: ResourceStore
) -> None:
    await store.apply(model_obj())
    probe = {"httpGet": {"path": "/nowhere", "port": 8080}, "periodSeconds": 0.2}
    await store.apply(app_obj("unready", instanceSpec={"readinessProbe": probe}))

    async def probe_failing() -> dict[str, Any] | None:
        ready = condition(await status_of(store, "unready"), "Ready")
        return ready if "readiness probe failed" in ready.get("message", "") else None

    await eventually(probe_failing, what="the custom readiness probe fails")
    assert (await status_of(store, "unready")).get("readyReplicas", 0) == 0
    # probed on a path that exists (a new template: a new replica), it turns ready
    probe["httpGet"]["path"] = "/version"
    await store.apply(app_obj("unready", instanceSpec={"readinessProbe": probe}))

    async def ready() -> dict[str, Any] | None:
        status = await status_of(store, "unready")
        return status if status.get("readyReplicas") == 1 else None

    await eventually(ready, within=30, what="ready with a probe on /version")


async def test_liveness_failures_restart_and_startup_gates_both(
    gpu_reconciler: tuple[InProcessReconciler, Any], bus: messaging.Bus, store: ResourceStore
) -> None:
    await store.apply(model_obj())
    dead = {"httpGet": {"path": "/nowhere"}, "periodSeconds": 0.2, "failureThreshold": 2}
    await store.apply(app_obj("dying", instanceSpec={"livenessProbe": dead}))

    async def restarted() -> list[Any] | None:
        found = await records_of(bus, "dying", 1)
        return found if found and found[0].restarts >= 1 else None

    await eventually(restarted, within=30, what="liveness failures restart the replica")
    # A startup probe that never succeeds: readiness and liveness never run, the replica
    # is restarted after failureThreshold failures and never becomes ready.
    never = {"exec": {"command": ["false"]}, "periodSeconds": 0.2, "failureThreshold": 2}
    fine = {"httpGet": {"path": "/health"}, "periodSeconds": 0.2}
    await store.apply(
        app_obj("blocked", instanceSpec={"startupProbe": never, "readinessProbe": fine})
    )

    async def startup_failed() -> dict[str, Any] | None:
        status = await status_of(store, "blocked")
        ready = condition(status, "Ready")
        return status if "startup probe failed 2 times" in ready.get("message", "") else None

    status = await eventually(startup_failed, within=30, what="the startup probe kills it")
    assert status.get("readyReplicas", 0) == 0


async def test_runtime_image_volumes_and_too_many_gpus_are_refused(
    gpu_reconciler: tuple[InProcessReconciler, Any], bus: messaging.Bus, store: ResourceStore
) -> None:
    await store.apply(model_obj())
    await store.apply(app_obj("imaged", runtimeImage="vllm/vllm-openai:v0.8.2"))
    await store.apply(
        app_obj(
            "mounted",
            instanceSpec={
                "volumes": [{"name": "data", "hostPath": {"path": "/data"}}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            },
        )
    )
    await store.apply(
        app_obj("greedy", instanceSpec={"resources": {"limits": {"nvidia.com/gpu": 4}}})
    )
    await store.apply(
        app_obj(
            "secretive",
            instanceSpec={
                "env": [
                    {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "t"}}}
                ]
            },
        )
    )
    expected = {
        "imaged": "spec.runtimeImage is not used on the local platform: the engine runs from "
        "this machine's installation; remove it or use the kubernetes platform",
        "mounted": "spec.instanceSpec.volumes is not used on the local platform",
        "greedy": "asks for 4 nvidia.com/gpu per replica, but this machine has 2 GPU(s) (0, 1)",
        "secretive": "spec.instanceSpec.env HF_TOKEN: secretKeyRef cannot be resolved",
    }
    for name, message in expected.items():

        async def refused(name: str = name, message: str = message) -> dict[str, Any] | None:
            status = await status_of(store, name)
            precheck = condition(status, "Precheck")
            ok = precheck.get("status") == "False" and message in precheck.get("message", "")
            return status if ok else None

        status = await eventually(refused, what=f"{name} refused")
        assert status["phase"] == "Failed"
    assert await replica_records(bus) == []
