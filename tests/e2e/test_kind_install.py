"""Arks installed from deploy/ on a real cluster (kind), as docs/kubernetes.md says.

Runs only where `ARKS_E2E_KUBECONFIG` names the kubeconfig of a disposable cluster; no
kind cluster can run on the project's machines, so elsewhere the module is skipped with
that reason (the one skip of the suite). The cluster needs:

- the Arks images of deploy/overlays/dev's pins, loaded into it
  (`docker build -f services/<svc>/Dockerfile -t arks/<svc>:dev .` for reconciler, router,
  accountant, model-cache and engine-sim, then `kind load docker-image arks/<svc>:dev`);
- LeaderWorkerSet (the reconciler's default driver; `kubectl apply --server-side -f
  https://github.com/kubernetes-sigs/lws/releases/download/v0.6.1/manifests.yaml`);
- a default StorageClass (kind's `standard`); `ARKS_E2E_STORAGE_CLASS` names the one the
  quickstart's ArksModel PVC gets instead of upstream's `local-path` (default `standard`).

Steps: the CRDs (server-side apply), the namespace, `arks credentials kubernetes | kubectl
apply -f -`, `kubectl apply -k deploy/overlays/dev`; every workload rolls out (the two
reconcilers Ready); upstream's quickstart with `runtime: sim`
(examples/quickstart/kubernetes.yaml) reaches Running; a chat completion with
`sk-test123456` answers 200 through the router's Service (kubectl port-forward). The
quickstart's objects are deleted at the end; the install stays unless
`ARKS_E2E_UNINSTALL=1`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
QUICKSTART = ROOT / "examples" / "quickstart" / "kubernetes.yaml"
KUBECONFIG = os.environ.get("ARKS_E2E_KUBECONFIG", "")

pytestmark = [
    pytest.mark.skipif(
        not KUBECONFIG,
        reason="kind e2e of deploy/: set ARKS_E2E_KUBECONFIG to the kubeconfig of a kind "
        "cluster with the arks/*:dev images loaded and LeaderWorkerSet installed "
        "(tests/e2e/test_kind_install.py); no kind cluster can run on this machine",
    ),
    pytest.mark.slow,
    pytest.mark.timeout(1500),
]


class Cluster:
    """The real kubectl against a copy of the e2e kubeconfig (its caches in `home`)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.kubeconfig = home / "kubeconfig"
        shutil.copyfile(KUBECONFIG, self.kubeconfig)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "KUBECONFIG": str(self.kubeconfig),
        }

    def run(
        self, *args: str, stdin: str | None = None, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [shutil.which("kubectl") or "/usr/bin/kubectl", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr or done.stdout}")
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)


async def _until(check: Any, what: str, within: float, cluster: Cluster, diagnose: str) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            state = cluster.run(*diagnose.split(), check=False)
            raise AssertionError(f"timed out waiting for {what}:\n{state.stdout}{state.stderr}")
        await asyncio.sleep(2)


def _quickstart() -> str:
    storage_class = os.environ.get("ARKS_E2E_STORAGE_CLASS", "standard")
    docs = [d for d in yaml.safe_load_all(QUICKSTART.read_text()) if d]
    for doc in docs:
        if doc["kind"] == "ArksModel":
            doc["spec"]["storage"]["pvc"]["spec"]["storageClassName"] = storage_class
    return yaml.safe_dump_all(docs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    kube = Cluster(tmp_path)
    lws = kube.run("get", "crd", "leaderworkersets.leaderworkerset.x-k8s.io", check=False)
    assert lws.returncode == 0, (
        "the e2e cluster lacks LeaderWorkerSet (the reconciler's default driver): install "
        "it first (see this module's docstring)"
    )
    yield kube
    kube.run(
        "delete",
        "-f",
        "-",
        "--ignore-not-found",
        "--wait=true",
        stdin=_quickstart(),
        timeout=300,
        check=False,
    )
    if os.environ.get("ARKS_E2E_UNINSTALL") == "1":
        kube.run(
            "delete",
            "-k",
            str(DEPLOY / "overlays" / "dev"),
            "--ignore-not-found",
            timeout=300,
            check=False,
        )


def _install(kube: Cluster) -> None:
    kube.run("apply", "--server-side", "-f", str(DEPLOY / "crds"))
    crds = [yaml.safe_load(p.read_text()) for p in sorted((DEPLOY / "crds").glob("*.yaml"))]
    names = [f"crd/{crd['metadata']['name']}" for crd in crds]
    kube.run("wait", "--for=condition=established", "--timeout=60s", *names, timeout=90)
    kube.run("apply", "-f", str(DEPLOY / "base" / "namespace.yaml"))
    existing = kube.run("get", "secret", "arks-nats-auth", "-n", "arks-system", check=False)
    if existing.returncode != 0:  # new credentials once; a rerun keeps them
        secrets = subprocess.run(
            [sys.executable, "-m", "arks_cli", "credentials", "kubernetes"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        kube.run("apply", "-f", "-", stdin=secrets)
    kube.run("apply", "-k", str(DEPLOY / "overlays" / "dev"))
    for workload in (
        "statefulset/nats",
        "statefulset/valkey",
        "deployment/arks-reconciler",
        "deployment/arks-router",
        "deployment/arks-accountant",
        "deployment/arks-model-cache",
    ):
        done = kube.run(
            "rollout",
            "status",
            "-n",
            "arks-system",
            workload,
            "--timeout=300s",
            timeout=330,
            check=False,
        )
        if done.returncode != 0:
            pods = kube.run("get", "pods", "-n", "arks-system", "-o", "wide", check=False)
            events = kube.run("get", "events", "-n", "arks-system", check=False)
            raise AssertionError(
                f"{workload} did not roll out: {done.stderr}\n{pods.stdout}\n{events.stdout}"
            )
    reconciler = kube.json("get", "deployment", "arks-reconciler", "-n", "arks-system")
    assert reconciler["status"]["readyReplicas"] == 2


def _port_forward(kube: Cluster, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            shutil.which("kubectl") or "/usr/bin/kubectl",
            "port-forward",
            "-n",
            "arks-system",
            "svc/arks-router",
            f"{port}:80",
        ],
        env=kube.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_deploy_installs_a_working_arks_on_kind(cluster: Cluster) -> None:
    await asyncio.to_thread(_install, cluster)
    await asyncio.to_thread(cluster.run, "apply", "-f", "-", stdin=_quickstart())

    def running() -> bool:
        app = cluster.json("get", "arkapp", "app-qwen", "-n", "default")
        return (app.get("status") or {}).get("phase") == "Running"

    await _until(running, "app-qwen Running", 600, cluster, "get arkapp,am,aep,pods,pvc -n default")

    port = _free_port()
    forward = _port_forward(cluster, port)
    try:

        def answered() -> httpx.Response | None:
            try:
                reply = httpx.post(
                    f"http://127.0.0.1:{port}/v1/chat/completions",
                    headers={"Authorization": "Bearer sk-test123456"},
                    json={
                        "model": "qwen-7b",
                        "messages": [{"role": "user", "content": "Hello"}],
                        "max_tokens": 8,
                    },
                    timeout=30,
                )
            except httpx.HTTPError:
                return None
            return reply if reply.status_code == 200 else None

        reply = await _until(
            answered,
            "a 200 from the router",
            180,
            cluster,
            "logs -n arks-system deployment/arks-router --tail=50",
        )
        body = reply.json()
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"]
        assert body["usage"]["completion_tokens"] > 0
    finally:
        forward.terminate()
        forward.wait(timeout=10)
