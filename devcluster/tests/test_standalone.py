"""`arks-devcluster serve` as a process: it writes a kubeconfig once it listens, a client
configured from that file talks to it, and SIGTERM stops it with exit code 0."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from kubernetes_asyncio import client, config


async def test_serve_writes_a_kubeconfig_that_a_client_uses_and_stops_on_sigterm(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "arks_devcluster",
        "serve",
        "--port",
        "0",
        "--kubeconfig-out",
        str(kubeconfig),
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            while not kubeconfig.exists():
                assert proc.returncode is None
                await asyncio.sleep(0.05)
        assert oct(os.stat(kubeconfig).st_mode & 0o777) == "0o600"  # it carries a token
        configuration = client.Configuration()
        await config.load_kube_config(str(kubeconfig), client_configuration=configuration)
        async with client.ApiClient(configuration) as api_client:
            core = client.CoreV1Api(api_client)
            await core.create_namespaced_config_map(
                "default", {"metadata": {"name": "c"}, "data": {"a": "1"}}
            )
            listed = await core.list_namespaced_config_map("default")
        assert [cm.metadata.name for cm in listed.items] == ["c"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()


def test_kubeconfig_path_is_created_with_its_directory(tmp_path):
    from arks_devcluster.kubeconfig import write_kubeconfig

    path = write_kubeconfig(tmp_path / "a" / "b" / "kubeconfig", "http://127.0.0.1:1", "t")
    assert Path(path).read_text().count("token: t") == 1


async def test_serve_with_rbac_speaks_https_and_its_kubeconfig_is_the_admins(tmp_path):
    from arks_devcluster.testing import Kubectl

    kubeconfig = tmp_path / "kubeconfig"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "arks_devcluster",
        "serve",
        "--port",
        "0",
        "--rbac",
        "--kubeconfig-out",
        str(kubeconfig),
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            while not kubeconfig.exists():
                assert proc.returncode is None
                await asyncio.sleep(0.05)
        kubectl = Kubectl(kubeconfig)
        got = await kubectl.check("get", "crd", "arksquotas.arks.ai", "-o", "name")
        assert got.out.strip() == "customresourcedefinition.apiextensions.k8s.io/arksquotas.arks.ai"
        wrong = await kubectl.run("get", "namespaces", "--token=wrong")
        assert wrong.code == 1
        assert "You must be logged in to the server" in wrong.err  # 401
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
