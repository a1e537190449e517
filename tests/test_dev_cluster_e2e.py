"""The dev cluster as a user meets it: `arks cluster up`, then the real kubectl.

`arks cluster up` starts the API server, controllers and kubelet in the background and
writes `.arks/kubeconfig`; `kubectl create deployment` (a protobuf body) of the engine
simulator's image gives Ready pods whose own loopback IPs answer `/v1/models`;
`kubectl logs`, `rollout status`, `scale`, `delete` behave; `arks cluster down` stops
everything, pods' processes included. A download Job of the model-cache image fills a
claim from a fake Hub, and engine pods mounting it serve that model. The conformance
test applies deploy/crds/ and every upstream sample of the spec's §1 with kubectl.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from arks_cli.testing import Result, arks_process
from arks_devcluster.testing import Kubectl
from arks_reconciler.testing import eventually

ROOT = Path(__file__).resolve().parents[1]


def _image_named_in_deploy(name: str) -> str:
    kustomization = yaml.safe_load((ROOT / "deploy" / "kustomization.yaml").read_text())
    (entry,) = [i for i in kustomization["images"] if i["name"] == name]
    return f"{entry.get('newName', name)}:{entry['newTag']}"


SIM_IMAGE = _image_named_in_deploy("arks/engine-sim")
SIM_PORT = 8080  # the engine-sim image's (ARKS_SIM_PORT in its Dockerfile)


def _arks(*args: str, cwd: Path) -> Result:
    return arks_process(*args, cwd=cwd, timeout=120, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.fixture
async def dev_cluster(tmp_path: Path) -> AsyncIterator[tuple[Path, Kubectl]]:
    root = tmp_path / ".arks"
    started = await asyncio.to_thread(_arks, "cluster", "up", "--port", "0", cwd=tmp_path)
    assert started.code == 0, started.err + started.out
    assert (root / "kubeconfig").is_file()
    assert f"export KUBECONFIG={root / 'kubeconfig'}" in started.out
    try:
        yield root, Kubectl(root / "kubeconfig")
    finally:
        # (a test may have stopped it already: then `down` finds nothing to stop)
        await asyncio.to_thread(_arks, "cluster", "down", cwd=tmp_path)


def _ready(pod: dict) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


async def test_kubectl_create_deployment_runs_engine_sim_pods(dev_cluster, tmp_path: Path) -> None:
    _root, kubectl = dev_cluster
    nodes = (await kubectl.check("get", "nodes", "-o", "json")).json()["items"]
    assert nodes
    assert all(
        any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
        for n in nodes
    )
    status = await asyncio.to_thread(_arks, "cluster", "status", cwd=tmp_path)
    assert status.code == 0
    assert "runs at" in status.out

    await kubectl.check("create", "deployment", "sim", f"--image={SIM_IMAGE}", "--replicas=3")
    await kubectl.check("rollout", "status", "deployment/sim", "--timeout=120s")
    pods = (await kubectl.check("get", "pods", "-l", "app=sim", "-o", "json")).json()["items"]
    assert len(pods) == 3
    assert all(_ready(p) for p in pods)
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 3
    assert all(ip.startswith("127.") and ip != "127.0.0.1" for ip in ips)
    # Without a readiness probe a pod is Ready once its process starts (as upstream),
    # a moment before the simulator listens.
    async with httpx.AsyncClient(timeout=10) as http:

        async def all_answer() -> bool:
            for ip in ips:
                try:
                    answer = await http.get(f"http://{ip}:{SIM_PORT}/v1/models")
                except httpx.TransportError:
                    return False
                assert answer.status_code == 200, ip
                assert answer.json()["data"], ip
            return True

        await eventually(
            all_answer, within=90, what="every pod's simulator to answer on its own IP"
        )
    logs = await kubectl.check("logs", pods[0]["metadata"]["name"])
    assert logs.out.strip(), "the simulator's own output is the pod's log"

    deployment = (await kubectl.check("get", "deployment", "sim", "-o", "json")).json()
    assert deployment["status"]["readyReplicas"] == 3
    await kubectl.check("scale", "deployment/sim", "--replicas=1")

    async def one_left() -> bool:
        left = (await kubectl.check("get", "pods", "-l", "app=sim", "-o", "json")).json()
        return len(left["items"]) == 1

    await eventually(one_left, within=90, what="the deployment to scale down to one pod")
    await kubectl.check("delete", "deployment", "sim")

    async def all_gone() -> bool:
        left = (await kubectl.check("get", "pods", "-l", "app=sim", "-o", "json")).json()
        if left["items"]:
            return False
        async with httpx.AsyncClient(timeout=2) as http:
            for ip in ips:
                try:
                    await http.get(f"http://{ip}:{SIM_PORT}/v1/models")
                    return False
                except httpx.TransportError:
                    pass
        return True

    await eventually(all_gone, within=90, what="the pods and their processes to go")


async def test_arks_resources_print_their_columns_and_down_stops_everything(
    dev_cluster, tmp_path: Path
) -> None:
    root, kubectl = dev_cluster
    await kubectl.check("apply", "-f", str(ROOT / "deploy" / "crds"))
    await kubectl.check("apply", "-f", str(ROOT / "examples" / "quickstart" / "local.yaml"))
    wide = await kubectl.check("get", "arkapp", "-o", "wide")
    assert re.search(r"^NAME\s", wide.out, re.M)
    await kubectl.check(
        "apply", "--server-side", "-f", str(ROOT / "examples" / "quickstart" / "local.yaml")
    )
    described = await kubectl.check("describe", "arksendpoint")
    assert "Name:" in described.out
    record = json.loads((root / "cluster.json").read_text())
    pid = record["process"]["pid"]
    stopped = await asyncio.to_thread(_arks, "cluster", "down", cwd=tmp_path)
    assert stopped.code == 0, stopped.err
    assert not (root / "kubeconfig").exists()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    again = await asyncio.to_thread(_arks, "cluster", "down", cwd=tmp_path)
    assert again.code != 0
    assert "no dev cluster" in again.err


def _spec_samples(shared: Path) -> list[str]:
    text = (shared / "reference" / "arks-upstream-spec.md").read_text()
    section = text.split("\n## 1.", 1)[1].split("\n## 2.", 1)[0]
    return [
        block
        for block in re.findall(r"```yaml\n(.*?)```", section, re.S)
        if "apiVersion:" in block and "kind:" in block
    ]


async def test_upstream_samples_apply_with_kubectl(shared_reference: Path, dev_cluster) -> None:
    _, kubectl = dev_cluster
    await kubectl.check("apply", "-f", str(ROOT / "deploy" / "crds"))
    samples = _spec_samples(shared_reference)
    assert samples, "the spec's §1 has YAML examples"
    for sample in samples:
        await kubectl.check("apply", "-f", "-", stdin=sample)
    quickstart = shared_reference / "upstream" / "arks" / "quickstart.yaml"
    await kubectl.check("apply", "-f", str(quickstart))


DOWNLOAD = """
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: models}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: download-tiny}
spec:
  backoffLimit: 2
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: download
          image: arks/model-cache:dev
          args: [download, org/tiny, --endpoint, "HUB", --cache-root, /models/cache,
                 --local-dir, /models/org-tiny]
          env: [{name: HF_HOME, value: /models/hf-home}]
          volumeMounts: [{name: models, mountPath: /models}]
      volumes: [{name: models, persistentVolumeClaim: {claimName: models}}]
"""
SERVE = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: tiny}
spec:
  replicas: 2
  selector: {matchLabels: {app: tiny}}
  template:
    metadata: {labels: {app: tiny}}
    spec:
      containers:
        - name: engine
          image: arks/engine-sim:dev
          args: [--model, /models/org-tiny, --served-model-name, tiny]
          ports: [{name: http, containerPort: 8080}]
          readinessProbe: {httpGet: {path: /v1/models, port: http}, periodSeconds: 1}
          volumeMounts: [{name: models, mountPath: /models, readOnly: true}]
      volumes: [{name: models, persistentVolumeClaim: {claimName: models}}]
"""


async def test_a_download_job_fills_a_claim_that_engine_pods_then_serve(tmp_path: Path) -> None:
    """The model-cache image really downloads (from a fake Hub) into a claim; engine-sim
    pods mounting that claim read the model's config and serve it."""
    from arks_devcluster import FakeKubeApi, serve
    from arks_devcluster.cluster import cluster_crds, running_workloads
    from arks_devcluster.kubelet import default_config
    from arks_model_cache.testing.fakehub import FakeHub

    with FakeHub() as hub:
        hub.add_repo("org/tiny").commit(
            {"config.json": json.dumps({"max_position_embeddings": 4096}), "w.bin": b"\1" * 4096}
        )
        async with (
            serve(FakeKubeApi(crds=cluster_crds())) as (api, url),
            running_workloads(api, default_config(), tmp_path / "cluster"),
        ):
            kubectl = Kubectl.for_server(tmp_path, url, "token")
            await kubectl.check("apply", "-f", "-", stdin=DOWNLOAD.replace("HUB", hub.url))
            await kubectl.check(
                "wait", "--for=condition=complete", "job/download-tiny", "--timeout=90s"
            )
            # (the engines start once the model is there, as Arks orders it)
            await kubectl.check("apply", "-f", "-", stdin=SERVE)
            claim = tmp_path / "cluster" / "volumes" / "default" / "models"
            assert json.loads((claim / "org-tiny" / "config.json").read_text()) == {
                "max_position_embeddings": 4096
            }
            await kubectl.check("rollout", "status", "deployment/tiny", "--timeout=90s")
            pods = (await kubectl.check("get", "pods", "-l", "app=tiny", "-o", "json")).json()
            async with httpx.AsyncClient(timeout=10) as http:
                for item in pods["items"]:
                    ip = item["status"]["podIP"]
                    models = (await http.get(f"http://{ip}:8080/v1/models")).json()
                    assert [m["id"] for m in models["data"]] == ["tiny"]
                    assert models["data"][0]["max_model_len"] == 4096, "read from the claim"
