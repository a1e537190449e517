"""The kubelet runs pods: real processes on their own loopback IPs, probes, restarts,
image pulls that fail, simulated images, and the statuses and events upstream writes."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx

from arks_devcluster import FakeKubeApi
from arks_devcluster.kubelet.testing import (
    condition,
    container_status,
    current,
    events,
    eventually,
    fast_config,
    phase,
    pod,
    running_kubelet,
)

SIM = "arks/engine-sim:dev"


def _ready(api: FakeKubeApi, name: str) -> bool:
    return condition(api, name, "Ready").get("status") == "True"


async def _answers(url: str) -> bool:
    async with httpx.AsyncClient(timeout=2) as http:
        try:
            return (await http.get(url)).status_code == 200
        except httpx.TransportError:
            return False


async def test_engine_sim_pods_run_on_their_own_ips_and_stop_when_deleted(tmp_path: Path) -> None:
    api = FakeKubeApi()
    async with running_kubelet(api, fast_config(), tmp_path) as kubelet:
        probe = {"httpGet": {"path": "/v1/models", "port": "http"}, "periodSeconds": 1}
        for name in ("sim-a", "sim-b"):
            api.create(
                pod(
                    name,
                    image=SIM,
                    args=["--host", "0.0.0.0", "--served-model-name", name],
                    ports=[{"name": "http", "containerPort": 8080}],
                    readinessProbe=probe,
                )
            )
        await eventually(lambda: _ready(api, "sim-a") and _ready(api, "sim-b"), "Ready", 30)
        a, b = (current(api, n)["status"] for n in ("sim-a", "sim-b"))
        assert a["podIP"] != b["podIP"]
        for status in (a, b):
            assert status["podIP"].startswith("127.0.")
            assert status["podIP"] != "127.0.0.1"
            assert status["podIPs"] == [{"ip": status["podIP"]}]
            assert status["hostIP"] == "127.0.0.1"
            assert status["phase"] == "Running"
            assert status["qosClass"] == "BestEffort"
            (container,) = status["containerStatuses"]
            assert container["ready"]
            assert container["started"]
            assert container["restartCount"] == 0
            assert container["containerID"].startswith("sim://")
            assert container["image"] == "docker.io/arks/engine-sim:dev"
        async with httpx.AsyncClient(timeout=5) as http:
            models = (await http.get(f"http://{a['podIP']}:8080/v1/models")).json()
        assert models["data"][0]["id"] == "sim-a"
        reasons = [e["reason"] for e in events(api, "sim-a")]  # by name: by time
        assert reasons[:4] == ["Scheduled", "Pulled", "Created", "Started"]
        assert "Created container: main" in {e["message"] for e in events(api, "sim-a")}

        uid = current(api, "sim-a")["metadata"]["uid"]
        api.collector.delete(api.registry.resource("", "pods"), "default", "sim-a", {})
        url = f"http://{a['podIP']}:8080/v1/models"

        async def stopped() -> bool:
            return uid not in kubelet.workers and not await _answers(url)

        await eventually(stopped, "sim-a's process to stop", 10)
        await eventually(lambda: len(kubelet.processes.live) == 1, "one process left", 10)
        assert await _answers(f"http://{b['podIP']}:8080/v1/models")
        assert kubelet.addresses.address_of(uid) is None
    assert not kubelet.processes.live


async def test_readiness_probe_gates_ready_and_liveness_restarts(tmp_path: Path) -> None:
    api = FakeKubeApi()
    sleeper = ["-c", "import time; time.sleep(60)"]
    async with running_kubelet(api, fast_config(), tmp_path):
        api.create(pod("unready", args=sleeper, readinessProbe={"tcpSocket": {"port": 9}}))
        api.create(
            pod(
                "dead",
                args=sleeper,
                livenessProbe={"httpGet": {"port": 9, "path": "/livez"}, "failureThreshold": 2},
            )
        )
        await eventually(lambda: container_status(api, "dead").get("restartCount", 0) >= 1)
        assert phase(api, "unready") == "Running"
        ready = condition(api, "unready", "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "ContainersNotReady")
        assert ready["message"] == "containers with unready status: [main]"
        assert container_status(api, "unready")["started"] is True
        unhealthy = [e for e in events(api, "unready") if e["reason"] == "Unhealthy"]
        assert unhealthy[0]["message"].startswith("Readiness probe failed: dial tcp ")
        assert unhealthy[0]["message"].endswith(":9: connect: connection refused")
        assert unhealthy[0]["type"] == "Warning"
        messages = {e["message"] for e in events(api, "dead")}
        assert "Container main failed liveness probe, will be restarted" in messages
        assert any(m.startswith('Liveness probe failed: Get "http://127.0.') for m in messages)
        last = container_status(api, "dead")["lastState"]["terminated"]
        assert last["reason"] == "Error"
        assert last["exitCode"] in (137, 143)


async def test_unknown_images_fail_to_pull_and_simulated_ones_run_without_a_process(
    tmp_path: Path,
) -> None:
    api = FakeKubeApi()
    async with running_kubelet(api, fast_config(), tmp_path) as kubelet:
        api.create(pod("missing", image="example.com/nothing:1"))
        api.create(pod("vllm", image="vllm/vllm-openai:v0.9.0", args=["--model", "x"]))
        await eventually(lambda: _ready(api, "vllm"))
        assert not kubelet.processes.live
        assert phase(api, "vllm") == "Running"

        def backing_off() -> bool:
            waiting = container_status(api, "missing").get("state", {}).get("waiting", {})
            return waiting.get("reason") == "ImagePullBackOff"

        await eventually(backing_off, "ImagePullBackOff")
        assert phase(api, "missing") == "Pending"
        waiting = container_status(api, "missing")["state"]["waiting"]
        assert waiting["message"].startswith('Back-off pulling image "example.com/nothing:1"')
        messages = {(e["reason"], e["message"]) for e in events(api, "missing")}
        assert ("Failed", "Error: ErrImagePull") in messages
        assert ("Failed", "Error: ImagePullBackOff") in messages
        assert ("BackOff", 'Back-off pulling image "example.com/nothing:1"') in messages
        assert any(
            m.startswith('Failed to pull image "example.com/nothing:1": ') for _, m in messages
        )


async def test_restart_policies_end_pods_or_back_off(tmp_path: Path) -> None:
    api = FakeKubeApi()
    never = {"restartPolicy": "Never"}
    async with running_kubelet(api, fast_config(), tmp_path):
        api.create(pod("ok", args=["-c", "print('done')"], spec=never))
        api.create(pod("bad", args=["-c", "raise SystemExit(3)"], spec=never))
        api.create(pod("crash", args=["-c", "raise SystemExit(1)"]))
        api.create(
            pod("retry", args=["-c", "raise SystemExit(0)"], spec={"restartPolicy": "OnFailure"})
        )
        await eventually(lambda: phase(api, "ok") == "Succeeded" and phase(api, "bad") == "Failed")
        await eventually(lambda: phase(api, "retry") == "Succeeded")
        ended = container_status(api, "ok")["state"]["terminated"]
        assert (ended["exitCode"], ended["reason"]) == (0, "Completed")
        ended = container_status(api, "bad")["state"]["terminated"]
        assert (ended["exitCode"], ended["reason"]) == (3, "Error")
        ready = condition(api, "bad", "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "PodCompleted")

        def crash_looping() -> bool:
            status = container_status(api, "crash")
            waiting = status.get("state", {}).get("waiting", {})
            return waiting.get("reason") == "CrashLoopBackOff" and status["restartCount"] >= 2

        await eventually(crash_looping, "CrashLoopBackOff")
        status = container_status(api, "crash")
        assert phase(api, "crash") == "Running"
        assert status["lastState"]["terminated"]["exitCode"] == 1
        assert (
            "restarting failed container=main pod=crash_default("
            in (status["state"]["waiting"]["message"])
        )
        backoffs = [e for e in events(api, "crash") if e["reason"] == "BackOff"]
        assert backoffs[0]["message"].startswith(
            "Back-off restarting failed container main in pod crash_default("
        )


async def test_env_volumes_and_init_containers(tmp_path: Path) -> None:
    api = FakeKubeApi()
    api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "default"},
            "data": {"greeting": "hello", "app.conf": "mode=dev\n"},
        }
    )
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", "namespace": "default"},
            "data": {"token": "czNjcjN0"},  # s3cr3t
        }
    )
    script = (
        "import os, pathlib;"
        "model = pathlib.Path(os.environ['MODEL_DIR']);"
        "print(os.environ['GREETING'], os.environ['POD'], os.environ['NS'], os.environ['IP'],"
        " os.environ['NODE'], os.environ['TOKEN'], os.environ['FULL'], os.environ['CFG_greeting'],"
        " os.environ['HOSTNAME'], os.environ['CPU']);"
        "print((model / 'weights').read_text());"
        "conf = '/etc/app/app.conf'.replace('/etc/app', os.environ['CONF']);"
        "print(pathlib.Path(conf).read_text());"
        "print('cwd', os.getcwd())"
    )
    init = {
        "name": "download",
        "image": "python",
        "args": [
            "-c",
            "import sys, pathlib; pathlib.Path(sys.argv[1]).write_text('w1')",
            "/models/weights",
        ],
        "volumeMounts": [{"name": "models", "mountPath": "/models"}],
    }
    manifest = pod(
        "envs",
        args=["-c", script],
        env=[
            {
                "name": "GREETING",
                "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}},
            },
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "FULL", "value": "$(GREETING)-$(POD)-$$(POD)-$(NOPE)"},
            {"name": "MODEL_DIR", "value": "/models"},
            {"name": "CONF", "value": "/etc/app"},
            {
                "name": "CPU",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}},
            },
        ],
        envFrom=[{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        volumeMounts=[
            {"name": "models", "mountPath": "/models"},
            {"name": "conf", "mountPath": "/etc/app"},
        ],
        resources={"limits": {"cpu": "500m", "memory": "1Gi"}},
        workingDir="/models",
        spec={
            "restartPolicy": "Never",
            "initContainers": [init],
            "volumes": [
                {"name": "models", "persistentVolumeClaim": {"claimName": "cache"}},
                {"name": "conf", "configMap": {"name": "settings"}},
            ],
        },
    )
    async with running_kubelet(api, fast_config(), tmp_path) as kubelet:
        api.create(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "cache", "namespace": "default"},
                "spec": {"accessModes": ["ReadWriteOnce"]},
            }
        )
        api.create(manifest)
        await eventually(lambda: phase(api, "envs") in ("Succeeded", "Failed"))
        found = current(api, "envs")
        uid, ip = found["metadata"]["uid"], found["status"]["podIP"]
        log = (tmp_path / "pods" / f"default_envs_{uid}" / "main.log").read_text()
        assert phase(api, "envs") == "Succeeded", log
        claim = tmp_path / "volumes" / "default" / "cache"
        assert (claim / "weights").read_text() == "w1"
        lines = log.splitlines()
        assert lines[0].split() == [
            "hello",
            "envs",
            "default",
            ip,
            "devcluster-node-1",
            "s3cr3t",
            "hello-envs-$(POD)-$(NOPE)",
            "hello",
            "envs",
            "500",
        ]
        assert lines[1] == "w1"
        assert lines[2] == "mode=dev"
        assert lines[-1] == f"cwd {claim.resolve()}"
        (init_status,) = found["status"]["initContainerStatuses"]
        assert init_status["state"]["terminated"]["reason"] == "Completed"
        assert condition(api, "envs", "Initialized")["status"] == "True"
        assert found["status"]["qosClass"] == "Burstable"
        assert kubelet.addresses.address_of(uid) is None, "a finished pod's IP is released"


async def test_missing_config_map_waits_then_runs(tmp_path: Path) -> None:
    api = FakeKubeApi()
    env = [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "late", "key": "x"}}}]
    async with running_kubelet(api, fast_config(), tmp_path):
        api.create(
            pod(
                "late",
                args=["-c", "import os; print(os.environ['X'])"],
                env=env,
                spec={"restartPolicy": "Never"},
            )
        )

        def waiting() -> bool:
            state = container_status(api, "late").get("state", {}).get("waiting", {})
            return state.get("reason") == "CreateContainerConfigError"

        await eventually(waiting)
        assert (
            container_status(api, "late")["state"]["waiting"]["message"]
            == 'configmap "late" not found'
        )
        api.create(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "late", "namespace": "default"},
                "data": {"x": "1"},
            }
        )
        await eventually(lambda: phase(api, "late") == "Succeeded")


async def test_stopping_the_kubelet_leaves_no_process(tmp_path: Path) -> None:
    api = FakeKubeApi()
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " print('up', flush=True); time.sleep(60)"
    )
    script = f'python3 -c "{stubborn}" & exec python3 -c "{stubborn}"'
    async with running_kubelet(api, fast_config(grace_period_cap=0.5), tmp_path) as kubelet:
        api.create(pod("shell", image="python", command=["/bin/sh", "-c", script]))
        api.create(pod("plain", args=["-c", "import time; time.sleep(60)"]))
        await eventually(
            lambda: phase(api, "shell") == "Running" and phase(api, "plain") == "Running"
        )
        log = (
            tmp_path
            / "pods"
            / f"default_shell_{current(api, 'shell')['metadata']['uid']}"
            / "main.log"
        )
        await eventually(lambda: log.exists() and log.read_text().count("up") == 2, "both started")
        groups = set(kubelet.processes.live)
        assert len(groups) == 2
    for group in groups:
        await eventually(lambda g=group: not _group_alive(g), f"group {group} to end", 5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # zombies are not running processes
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


async def test_pods_share_nothing_across_kubelets(tmp_path: Path) -> None:
    """Two dev clusters side by side never hand out the same pod IP."""
    first, second = FakeKubeApi(), FakeKubeApi()
    async with (
        running_kubelet(first, fast_config(), tmp_path / "a"),
        running_kubelet(second, fast_config(), tmp_path / "b"),
    ):
        first.create(pod("x", image="vllm/vllm-openai"))
        second.create(pod("x", image="vllm/vllm-openai"))
        await eventually(lambda: _ready(first, "x") and _ready(second, "x"))
        assert current(first, "x")["status"]["podIP"] != current(second, "x")["status"]["podIP"]
    await asyncio.sleep(0)
