"""The resource commands on the Kubernetes platform, against the dev cluster's API server.

The API server runs in this process (real HTTP, the arks.ai CRDs installed); the CLI
runs with a kubeconfig pointing at it: in a worker thread with its own event loop for
the commands, and as a subprocess, as a user runs it, where the environment and the
flags that pick the platform are the subject.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from arks_devcluster import serve
from arks_devcluster.api import FakeKubeApi
from arks_devcluster.kubeconfig import write_kubeconfig
from cli.tests.conftest import QUICKSTART, Result, arks_process, clean_env, in_process

V1 = "arks.ai/v1"
QUICKSTART_NAMES = [
    "arksmodel.arks.ai/qwen-7b",
    "arksapplication.arks.ai/app-qwen",
    "arksendpoint.arks.ai/qwen-7b",
    "arksquota.arks.ai/basic-quota",
    "arkstoken.arks.ai/example-token",
]
Arks = Callable[..., Awaitable[Result]]


async def run_arks(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> Result:
    return await asyncio.to_thread(arks_process, *argv, cwd=cwd, env=env, timeout=45)


@dataclass
class Cluster:
    api: FakeKubeApi
    url: str
    kubeconfig: Path
    arks: Arks
    """`await cluster.arks("get", "am")`: `arks --kubeconfig K get am`."""


@pytest.fixture
async def cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Cluster]:
    for name in [k for k in os.environ if k.startswith("ARKS_")]:
        monkeypatch.delenv(name)
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    async with serve() as (api, url):
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", url, "any-token")
        yield Cluster(api, url, kubeconfig, in_process(capsys, "--kubeconfig", str(kubeconfig)))


def _quickstart(tmp_path: Path, **changes: Any) -> Path:
    """The quickstart with `changes` (kind -> spec updates) applied, as a file."""
    docs = list(yaml.safe_load_all(QUICKSTART.read_text()))
    for doc in docs:
        doc["spec"].update(changes.get(doc["kind"], {}))
    path = tmp_path / "quickstart.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


async def test_apply_creates_then_unchanged_then_configured(
    cluster: Cluster, tmp_path: Path
) -> None:
    first = await cluster.arks("apply", "-f", str(QUICKSTART))
    assert first.code == 0, first.err
    assert first.out.splitlines() == [f"{n} created" for n in QUICKSTART_NAMES]
    app = cluster.api.get(V1, "arksapplications", "default", "app-qwen")
    assert app is not None
    managers = {m["manager"] for m in app["metadata"]["managedFields"]}
    assert managers == {"arks-cli"}
    token = cluster.api.get(V1, "arkstokens", "default", "example-token")
    assert token is not None
    assert token["spec"]["token"] == "sk-test123456"  # plain, as upstream's CR

    again = await cluster.arks("apply", "-f", str(QUICKSTART))
    assert again.code == 0, again.err
    assert again.out.splitlines() == [f"{n} unchanged" for n in QUICKSTART_NAMES]
    assert cluster.api.get(V1, "arksapplications", "default", "app-qwen") == app

    changed = _quickstart(tmp_path, ArksApplication={"replicas": 3})
    third = await cluster.arks("apply", "-f", str(changed))
    assert third.code == 0, third.err
    assert "arksapplication.arks.ai/app-qwen configured" in third.out.splitlines()
    assert "arksmodel.arks.ai/qwen-7b unchanged" in third.out.splitlines()
    after = cluster.api.get(V1, "arksapplications", "default", "app-qwen")
    assert after is not None
    assert after["spec"]["replicas"] == 3
    assert after["metadata"]["generation"] == app["metadata"]["generation"] + 1


async def test_an_invalid_document_writes_nothing(cluster: Cluster, tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all(QUICKSTART.read_text()))
    docs[-1]["spec"]["qos"][0]["rateLimits"][0]["type"] = "rph"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    result = await cluster.arks("apply", "-f", str(bad))
    assert result.code == 1
    assert result.out == ""
    assert result.err.splitlines() == [
        f"error: {bad}: document 5 (ArksToken example-token): spec.qos[0].rateLimits[0].type: "
        "Input should be 'rpm', 'rpd', 'tpm' or 'tpd' (got 'rph')"
    ]
    assert not any(method == "PATCH" for method, _ in cluster.api.requests)
    assert cluster.api.get(V1, "arksmodels", "default", "qwen-7b") is None


async def test_get_tables_yaml_json_name_and_not_found(cluster: Cluster) -> None:
    assert (await cluster.arks("apply", "-f", str(QUICKSTART))).code == 0

    table = await cluster.arks("get", "arkapp,aep")
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert lines[0].split() == ["NAME", "PHASE", "AGE", "REPLICAS", "READY"]
    assert lines[1].startswith("arksapplication.arks.ai/app-qwen")
    assert any(line.startswith("arksendpoint.arks.ai/qwen-7b ") for line in lines)

    one = await cluster.arks("get", "arksmodel", "qwen-7b", "-o", "yaml")
    assert one.code == 0, one.err
    model = yaml.safe_load(one.out)
    assert (model["apiVersion"], model["kind"]) == (V1, "ArksModel")
    assert model["metadata"]["name"] == "qwen-7b"
    assert "managedFields" not in model["metadata"]

    listed = json.loads((await cluster.arks("get", "atk", "-o", "json")).out)
    assert listed["kind"] == "List"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["example-token"]

    names = await cluster.arks("get", "am", "-A", "-o", "name")
    assert names.out == "arksmodel.arks.ai/qwen-7b\n"

    missing = await cluster.arks("get", "arkapp/nope")
    assert missing.code == 1
    assert missing.err == (
        'Error from server (NotFound): arksapplications.arks.ai "nope" not found\n'
    )

    empty = await cluster.arks("get", "am", "-n", "elsewhere")
    assert (empty.code, empty.out) == (0, "")
    assert empty.err == "No resources found in elsewhere namespace.\n"


async def test_describe_shows_the_kubernetes_events(cluster: Cluster) -> None:
    assert (await cluster.arks("apply", "-f", str(QUICKSTART))).code == 0
    app = cluster.api.get(V1, "arksapplications", "default", "app-qwen")
    assert app is not None
    involved = {
        "apiVersion": V1,
        "kind": "ArksApplication",
        "name": "app-qwen",
        "namespace": "default",
        "uid": app["metadata"]["uid"],
    }
    for name, reason, message, count, first, last in (
        ("app-qwen.1", "ModelLoading", "Waiting for ArksModel 'qwen-7b'", 1, 14400, 14400),
        ("app-qwen.2", "ReplicasNotReady", "0/1 replicas ready", 3, 18000, 1800),
    ):
        cluster.api.create(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": "default"},
                "involvedObject": involved,
                "reason": reason,
                "message": message,
                "type": "Normal",
                "count": count,
                "source": {"component": "arks-reconciler"},
                "firstTimestamp": _ago(first),
                "lastTimestamp": _ago(last),
            }
        )
    # Another object's event is not shown.
    cluster.api.create(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "other.1", "namespace": "default"},
            "involvedObject": {**involved, "name": "other", "uid": "0000"},
            "reason": "Elsewhere",
            "message": "not this one",
            "type": "Warning",
            "lastTimestamp": _ago(5),
        }
    )

    described = await cluster.arks("describe", "arkapp", "app-qwen")
    assert described.code == 0, described.err
    text = described.out
    assert text.startswith("Name:         app-qwen\nNamespace:    default\n")
    assert "Kind:         ArksApplication" in text
    events = text[text.index("Events:") :].splitlines()
    assert events[1].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert events[2].split()[:4] == ["Normal", "ModelLoading", "4h", "arks-reconciler"]
    assert events[2].endswith("Waiting for ArksModel 'qwen-7b'")
    assert "ReplicasNotReady   30m (x3 over 5h)   arks-reconciler" in events[3]
    assert len(events) == 4  # the other object's event is left out


async def test_describe_hides_a_token_and_shows_no_events(cluster: Cluster) -> None:
    assert (await cluster.arks("apply", "-f", str(QUICKSTART))).code == 0
    described = await cluster.arks("describe", "atk", "example-token")
    assert described.code == 0, described.err
    assert "sk-test123456" not in described.out
    assert "<hidden> (sha256 " in described.out
    assert described.out.rstrip().endswith("Events:  <none>")


async def test_delete_by_name_all_and_file(cluster: Cluster) -> None:
    assert (await cluster.arks("apply", "-f", str(QUICKSTART))).code == 0
    deleted = await cluster.arks("delete", "arkapp", "app-qwen", "nope")
    assert deleted.code == 1
    assert deleted.out == 'arksapplication.arks.ai "app-qwen" deleted\n'
    assert deleted.err == 'error: arksapplications.arks.ai "nope" not found\n'

    ignored = await cluster.arks("delete", "arkapp", "nope", "--ignore-not-found")
    assert (ignored.code, ignored.out, ignored.err) == (0, "", "")

    everything = await cluster.arks("delete", "atk", "--all")
    assert everything.out == 'arkstoken.arks.ai "example-token" deleted\n'
    assert cluster.api.get(V1, "arkstokens", "default", "example-token") is None

    from_file = await cluster.arks("delete", "-f", str(QUICKSTART), "--ignore-not-found")
    assert from_file.code == 0, from_file.err
    assert cluster.api.get(V1, "arksmodels", "default", "qwen-7b") is None


async def test_delete_marks_an_object_with_finalizers(cluster: Cluster) -> None:
    cluster.api.create(
        {
            "apiVersion": V1,
            "kind": "ArksModel",
            "metadata": {"name": "held", "namespace": "default", "finalizers": ["arks.ai/x"]},
            "spec": {"model": "Qwen/Qwen2.5-7B-Instruct-1M"},
        }
    )
    deleted = await cluster.arks("delete", "am", "held")
    assert (deleted.code, deleted.out) == (0, 'arksmodel.arks.ai "held" deleted\n')
    held = cluster.api.get(V1, "arksmodels", "default", "held")
    assert held is not None
    assert held["metadata"]["deletionTimestamp"]


async def test_token_create_then_get_shows_it(cluster: Cluster) -> None:
    created = await cluster.arks(
        "token", "create", "alice", "--endpoint", "qwen-7b", "--rpm", "60", "--quota", "q"
    )
    assert created.code == 0, created.err
    token = created.out.strip()
    assert token.startswith("sk-")
    assert "warning: ArksEndpoint default/qwen-7b does not exist (yet)" in created.err
    assert "warning: ArksQuota default/q does not exist (yet)" in created.err
    assert "arkstoken.arks.ai/alice created; the token is shown only now:" in created.err
    stored = cluster.api.get(V1, "arkstokens", "default", "alice")
    assert stored is not None
    assert stored["spec"]["token"] == token
    assert stored["spec"]["qos"] == [
        {
            "arksEndpoint": {"name": "qwen-7b"},
            "rateLimits": [{"type": "rpm", "value": 60}],
            "quota": {"name": "q"},
        }
    ]

    listed = await cluster.arks("get", "atk")
    assert listed.out.splitlines()[1].split()[0] == "alice"

    again = await cluster.arks("token", "create", "alice", "--endpoint", "qwen-7b")
    assert again.code == 1
    assert "arkstoken.arks.ai/alice already exists in namespace default" in again.err


async def test_usage_shows_arksquota_status(cluster: Cluster) -> None:
    cluster.api.create(
        {
            "apiVersion": V1,
            "kind": "ArksQuota",
            "metadata": {"name": "basic-quota", "namespace": "default"},
            "spec": {
                "quotas": [{"type": "prompt", "value": 1000}, {"type": "total", "value": 4000}],
                "budget": {"limit": "10", "currency": "USD"},
            },
            "status": {
                "quotaStatus": [
                    {"type": "prompt", "used": 250, "lastUpdateTime": _ago(1800)},
                    {"type": "total", "used": 1000, "lastUpdateTime": _ago(1800)},
                ],
                "budgetStatus": {"spent": "1.5", "currency": "USD", "lastUpdateTime": _ago(1800)},
            },
        }
    )
    cluster.api.create(
        {
            "apiVersion": V1,
            "kind": "ArksQuota",
            "metadata": {"name": "unused", "namespace": "team"},
            "spec": {"quotas": [{"type": "response", "value": 10}]},
        }
    )
    usage = await cluster.arks("usage")
    assert usage.code == 0, usage.err
    rows = [line.split() for line in usage.out.splitlines()]
    assert rows[0] == [
        "NAMESPACE",
        "QUOTA",
        "PERIOD",
        "PROMPT",
        "RESPONSE",
        "TOTAL",
        "SPENT",
        "UPDATED",
    ]
    assert rows[1] == [
        "default",
        "basic-quota",
        "lifetime",
        "250/1000",
        "(25%)",
        "0",
        "1000/4000",
        "(25%)",
        "1.5/10",
        "USD",
        "30m",
    ]
    assert rows[2] == ["team", "unused", "lifetime", "0", "0/10", "(0%)", "0", "0", "<never>"]

    one = await cluster.arks("usage", "-n", "team")
    assert [line.split()[0] for line in one.out.splitlines()] == ["NAMESPACE", "team"]

    by_token = await cluster.arks("usage", "--by", "token")
    assert by_token.code == 1
    assert "only the local platform reads" in by_token.err


async def test_namespace_defaults_to_the_kubeconfig_context(
    cluster: Cluster, tmp_path: Path
) -> None:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["contexts"][0]["context"]["namespace"] = "team"
    cluster.kubeconfig.write_text(yaml.safe_dump(config))
    docs = [d for d in yaml.safe_load_all(QUICKSTART.read_text()) if d["kind"] == "ArksModel"]
    del docs[0]["metadata"]["namespace"]
    unnamed = tmp_path / "model.yaml"
    unnamed.write_text(yaml.safe_dump(docs[0]))
    applied = await cluster.arks("apply", "-f", str(unnamed))
    assert applied.code == 0, applied.err
    assert cluster.api.get(V1, "arksmodels", "team", "qwen-7b") is not None
    listed = await cluster.arks("get", "am", "-o", "name")
    assert listed.out == "arksmodel.arks.ai/qwen-7b\n"
    assert (await cluster.arks("get", "am", "-n", "default")).out == ""


async def test_platform_from_the_environment_and_flags(cluster: Cluster, tmp_path: Path) -> None:
    assert (await cluster.arks("apply", "-f", str(QUICKSTART))).code == 0
    env = {**clean_env(), "ARKS_CLI_PLATFORM": "kubernetes", "KUBECONFIG": str(cluster.kubeconfig)}
    by_env = await run_arks("get", "am", "-o", "name", cwd=tmp_path, env=env)
    assert by_env.out == "arksmodel.arks.ai/qwen-7b\n", by_env.err
    after_command = await run_arks(
        "get", "am", "-o", "name", "--kubeconfig", str(cluster.kubeconfig), cwd=tmp_path
    )
    assert after_command.out == "arksmodel.arks.ai/qwen-7b\n", after_command.err

    conflicting = await run_arks(
        "--platform", "local", "--kubeconfig", str(cluster.kubeconfig), "get", "am", cwd=tmp_path
    )
    assert conflicting.code == 1
    assert "--kubeconfig and --context are for --platform kubernetes" in conflicting.err
    nats = await cluster.arks("get", "am", "--nats-url", "nats://127.0.0.1:4222")
    assert nats.code == 1
    assert "--nats-url is for the local platform" in nats.err


async def test_an_unreachable_api_server_is_one_line(tmp_path: Path) -> None:
    async with serve() as (_, url):
        pass  # the port is free again
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", url, "t")
    result = await run_arks("--kubeconfig", str(kubeconfig), "get", "am", cwd=tmp_path)
    assert result.code == 1
    assert result.err.startswith(f"error: cannot reach the Kubernetes API at {url} (")
    assert f"does the kubeconfig {kubeconfig} point at it?" in result.err
    assert "Traceback" not in result.err

    missing = await run_arks("--kubeconfig", str(tmp_path / "absent"), "get", "am", cwd=tmp_path)
    assert missing.code == 1
    assert missing.err.startswith("error: no usable Kubernetes configuration (")


async def test_forbidden_names_the_rbac_to_ask_for(tmp_path: Path) -> None:
    api = FakeKubeApi(rbac=True, admin_token="admin-token")
    async with serve(api) as (api, url):
        kubeconfig = write_kubeconfig(
            tmp_path / "kubeconfig", url, api.token_for("default", "nobody")
        )
        result = await run_arks("--kubeconfig", str(kubeconfig), "get", "arkapp", cwd=tmp_path)
    assert result.code == 1
    lines = result.err.splitlines()
    assert lines[0].startswith("error: Error from server (Forbidden): ")
    assert "system:serviceaccount:default:nobody" in lines[0]
    assert lines[1].startswith(
        "error: your user needs RBAC `list` on `arksapplications.arks.ai` in namespace default"
    )


def _ago(seconds: int) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
