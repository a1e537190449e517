"""The real kubectl against pods the kubelet runs: `kubectl logs` (the pods/log
subresource, RBAC included) and `kubectl get pods|nodes` with upstream's columns."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx

from arks_devcluster import FakeKubeApi, serve
from arks_devcluster.kubelet.testing import (
    container_status,
    eventually,
    fast_config,
    phase,
    pod,
    running_kubelet,
)

COUNT = "import time\nfor i in range(1, 6): print('line', i, flush=True)\ntime.sleep(60)"


async def test_kubectl_logs_tail_container_previous_and_follow(cluster, tmp_path: Path) -> None:
    api = cluster.api
    kubectl = cluster.kubectl
    async with running_kubelet(api, fast_config(), tmp_path / "work"):
        api.create(pod("talker", args=["-c", COUNT]))
        two = pod(
            "duo", args=["-c", "print('first here', flush=True); import time; time.sleep(60)"]
        )
        two["spec"]["containers"].append(
            {
                "name": "second",
                "image": "python",
                "args": ["-c", "print('second here'); import time; time.sleep(60)"],
            }
        )
        api.create(two)
        api.create(
            pod("crash", args=["-c", "import os; print('run', os.getpid()); raise SystemExit(1)"])
        )
        api.create(pod("nothing", image="example.com/none:1"))

        async def has(name: str, text: str, *args: str) -> bool:
            result = await kubectl.run("logs", name, *args)
            return result.code == 0 and text in result.out

        await eventually(lambda: has("talker", "line 5"), "talker's output")
        assert (await kubectl.check("logs", "talker")).out == "".join(
            f"line {i}\n" for i in range(1, 6)
        )
        assert (await kubectl.check("logs", "talker", "--tail=2")).out == "line 4\nline 5\n"
        assert (await kubectl.check("logs", "talker", "--limit-bytes=7")).out == "line 1\n"
        await eventually(lambda: has("duo", "second here", "-c", "second"))
        defaulted = await kubectl.check("logs", "duo")
        assert defaulted.out == "first here\n"
        assert 'Defaulted container "main"' in defaulted.err

        await eventually(lambda: container_status(api, "crash").get("restartCount", 0) >= 1)
        previous = await kubectl.check("logs", "crash", "-p")
        assert previous.out.startswith("run ")
        assert (await kubectl.check("logs", "crash")).out.startswith("run ")

        trigger = tmp_path / "go"
        follow = (
            "import os, time; print('a', flush=True)\n"
            f"while not os.path.exists({str(trigger)!r}): time.sleep(0.05)\n"
            "print('b', flush=True)"
        )
        api.create(pod("follow", args=["-c", follow], spec={"restartPolicy": "Never"}))
        await eventually(lambda: has("follow", "a"), "follow's first line")
        following = asyncio.create_task(kubectl.check("logs", "-f", "follow"))
        await asyncio.sleep(0.5)
        assert not following.done(), "kubectl logs -f waits for the container"
        trigger.touch()
        assert (await following).out == "a\nb\n"

        waiting = await kubectl.run("logs", "nothing")
        assert waiting.code != 0
        assert 'container "main" in pod "nothing" is waiting to start: ' in waiting.err

        async with httpx.AsyncClient(base_url=cluster.url) as http:
            base = "/api/v1/namespaces/default/pods"
            several = await http.get(f"{base}/duo/log")
            assert several.status_code == 400
            assert several.json()["message"] == (
                "a container name must be specified for pod duo, choose one of: [main second]"
            )
            unknown = await http.get(f"{base}/duo/log", params={"container": "third"})
            assert unknown.json()["message"] == "container third is not valid for pod duo"
            none = await http.get(f"{base}/talker/log", params={"previous": "true"})
            assert none.json()["message"] == (
                'previous terminated container "main" in pod "talker" not found'
            )
            plain = await http.get(f"{base}/talker/log", params={"tailLines": "1"})
            assert plain.headers["content-type"].startswith("text/plain")
            assert plain.text == "line 5\n"
            resources = (await http.get("/api/v1")).json()["resources"]
            assert {"name": "pods/log", "verbs": ["get"]}.items() <= next(
                r for r in resources if r["name"] == "pods/log"
            ).items()


async def test_pod_logs_obey_rbac(tmp_path: Path) -> None:
    api = FakeKubeApi(rbac=True, admin_token="admin")
    async with serve(api) as (_, url), running_kubelet(api, fast_config(), tmp_path):
        api.create(pod("talker", args=["-c", COUNT]))
        api.create(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "log-reader", "namespace": "default"},
                "rules": [{"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}],
            }
        )
        api.create(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "log-reader", "namespace": "default"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "log-reader",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "default"}],
            }
        )
        path = "/api/v1/namespaces/default/pods/talker/log"

        async def read(token: str) -> httpx.Response:
            async with httpx.AsyncClient(base_url=url) as http:
                return await http.get(path, headers={"Authorization": f"Bearer {token}"})

        await eventually(lambda: phase(api, "talker") == "Running")
        reader = api.token_for("default", "reader")
        response = await eventually(lambda: _with_text(read(reader)), "the log")
        assert response.text.startswith("line 1\n")
        denied = await read(api.token_for("default", "other"))
        assert denied.status_code == 403
        assert 'cannot get resource "pods/log"' in denied.json()["message"]


async def _with_text(pending) -> httpx.Response | None:  # type: ignore[no-untyped-def]
    response = await pending
    return response if response.status_code == 200 and response.text else None


async def test_kubectl_get_prints_pods_and_nodes_as_upstream(cluster, tmp_path: Path) -> None:
    api, kubectl = cluster.api, cluster.kubectl
    async with running_kubelet(api, fast_config(), tmp_path / "work"):
        nodes = await kubectl.check("get", "nodes")
        assert re.match(r"NAME\s+STATUS\s+ROLES\s+AGE\s+VERSION\n", nodes.out)
        assert re.search(r"^devcluster-node-1\s+Ready\s+<none>\s+\S+\s+v1\.32\.", nodes.out, re.M)
        wide = await kubectl.check("get", "nodes", "-o", "wide")
        assert "INTERNAL-IP" in wide.out
        assert "127.0.0.1" in wide.out
        api.create(pod("web", args=["-c", "import time; time.sleep(60)"]))
        api.create(pod("crash", args=["-c", "raise SystemExit(1)"]))
        api.create(pod("nothing", image="example.com/none:1"))
        api.create(pod("done", args=["-c", "pass"], spec={"restartPolicy": "Never"}))

        async def printed() -> str | None:
            out = (await kubectl.check("get", "pods")).out
            wanted = [
                r"^web\s+1/1\s+Running\s+0\s",
                r"^crash\s+0/1\s+CrashLoopBackOff\s+\d+ \(\S+ ago\)\s",
                r"^nothing\s+0/1\s+(ErrImagePull|ImagePullBackOff)\s+0\s",
                r"^done\s+0/1\s+Completed\s+0\s",
            ]
            return out if all(re.search(w, out, re.M) for w in wanted) else None

        out = await eventually(printed, "the pods' columns")
        assert out.startswith("NAME")
        assert re.match(r"NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\n", out)
        wide = (await kubectl.check("get", "pod", "web", "-o", "wide")).out
        ip = api.get("v1", "pods", "default", "web")["status"]["podIP"]
        assert re.search(
            rf"^web\s+1/1\s+Running\s+0\s+\S+\s+{re.escape(ip)}\s+devcluster-node-1\s", wide, re.M
        )
