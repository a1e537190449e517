"""Conformance: upstream Arks' quickstart, unchanged but for where the Hub is, reconciles
on the dev cluster to what upstream creates — a PVC and a download of the model, a
2-pod LeaderWorkerSet (vLLM, simulated by the dev cluster's kubelet), the Service
`arks-application-app-qwen` — and to the statuses users read: the model Ready, the
application Running, the endpoint routed, the token and quota published."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from arks_common import messaging
from arks_devcluster import FakeKubeApi, serve
from arks_devcluster.cluster import cluster_crds, running_workloads
from arks_devcluster.kubelet import default_config
from arks_model_cache.testing.fakehub import FakeHub
from arks_reconciler.kube.testing import NS, route_urls, start_reconciler
from arks_reconciler.testing import eventually

pytestmark = pytest.mark.conformance
REPO = "Qwen/Qwen2.5-7B-Instruct-1M"


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add_repo(REPO).commit(
            {"config.json": json.dumps({"max_position_embeddings": 8192}), "w.bin": b"\0" * 1024}
        )
        yield fake


def quickstart(shared: Path, hub_url: str) -> list[dict[str, Any]]:
    docs = [
        d for d in yaml.safe_load_all((shared / "upstream/arks/quickstart.yaml").read_text()) if d
    ]
    for doc in docs:
        doc["metadata"].setdefault("namespace", NS)
        if doc["kind"] == "ArksModel":  # this machine's Hub (upstream: HF_ENDPOINT is unsettable)
            instance = doc["spec"].setdefault("instanceSpec", {})
            instance.setdefault("env", []).append({"name": "HF_ENDPOINT", "value": hub_url})
    return docs


def _status(api: FakeKubeApi, plural: str, name: str) -> dict[str, Any]:
    return (api.get("arks.ai/v1", plural, NS, name) or {}).get("status") or {}


def _ready(status: dict[str, Any]) -> str | None:
    return next((c["status"] for c in status.get("conditions") or [] if c["type"] == "Ready"), None)


async def test_the_upstream_quickstart_reconciles_as_upstream_does(
    shared_reference: Path, hub: FakeHub, nats_server: Any, bus: messaging.Bus, tmp_path: Path
) -> None:
    config = default_config()
    config = type(config)(config.nodes, config.images, backoff_scale=0.01)
    async with (
        serve(FakeKubeApi(crds=cluster_crds())) as (api, url),
        running_workloads(api, config, tmp_path / "cluster"),
    ):
        reconciler = await start_reconciler(nats_server.url, tmp_path / "arks", url)
        try:
            for doc in quickstart(shared_reference, hub.url):
                api.create(doc)

            async def running() -> bool:
                app = _status(api, "arksapplications", "app-qwen")
                return app.get("phase") == "Running" and app.get("readyReplicas") == 1

            await eventually(running, within=120, what="app-qwen Running")
            model = _status(api, "arksmodels", "qwen-7b")
            assert model["phase"] == "Ready"
            assert model.get("path", "").startswith("/models/")
            claim = api.get("v1", "persistentvolumeclaims", NS, "qwen-7b")
            assert claim is not None
            assert claim["metadata"]["ownerReferences"][0]["kind"] == "ArksModel"

            lws = api.get("leaderworkerset.x-k8s.io/v1", "leaderworkersets", NS, "app-qwen")
            assert lws["spec"]["leaderWorkerTemplate"]["size"] == 2
            pods = [
                p
                for p in api.store.items(api.registry.resource("", "pods"), NS)
                if (p["metadata"].get("labels") or {}).get("arks.ai/application") == "app-qwen"
            ]
            roles = sorted(p["metadata"]["labels"]["arks.ai/work-load-role"] for p in pods)
            assert roles == ["leader", "worker"], "workers are never labelled leader"
            service = api.get("v1", "services", NS, "arks-application-app-qwen")
            assert service["spec"]["ports"][0]["port"] == 8080

            await eventually(lambda: route_urls(bus, 1), within=30, what="the endpoint's route")
            for plural, name in (
                ("arksendpoints", "qwen-7b"),
                ("arkstokens", "example-token"),
                ("arksquotas", "basic-quota"),
            ):

                async def ready(plural: str = plural, name: str = name) -> bool:
                    return _ready(_status(api, plural, name)) == "True"

                await eventually(ready, within=30, what=f"{plural}/{name} Ready")
        finally:
            await reconciler.stop()
