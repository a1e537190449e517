"""Helpers for tests of the Kubernetes platform on the dev cluster: objects like the
upstream quickstart's (a sim application), settings pointing at a dev cluster's API, an
in-process reconciler on that platform, and the route table it publishes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from arks_common import events, messaging, subjects
from arks_common.settings import KubernetesSettings
from arks_reconciler.settings import KubernetesPlatformSettings, LeaseSettings
from arks_reconciler.testing import InProcessReconciler, make_settings

NS = "default"
CLAIM = {
    "name": "models",
    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
}


def model(name: str = "qwen-7b", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "arks.ai/v1",
        "kind": "ArksModel",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"model": "Qwen/Qwen2.5-7B-Instruct", "storage": {"pvc": CLAIM}, **spec},
    }


def application(name: str = "app-qwen", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "arks.ai/v1",
        "kind": "ArksApplication",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": 2,
            "runtime": "sim",
            "model": {"name": "qwen-7b"},
            "servedModelName": "qwen-7b",
            **spec,
        },
    }


def endpoint(name: str = "qwen-7b") -> dict[str, Any]:
    return {
        "apiVersion": "arks.ai/v1",
        "kind": "ArksEndpoint",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"defaultWeight": 1},
    }


def kube_settings(
    url: str, *, identity: str | None = None, **overrides: Any
) -> KubernetesPlatformSettings:
    lease = LeaseSettings(
        namespace=NS, duration=3, renew_deadline=2, retry_period=0.5, identity=identity
    )
    values: dict[str, Any] = {"api_url": url, "lease": lease, **overrides}
    return KubernetesPlatformSettings(**{**KubernetesSettings().model_dump(), **values})


async def start_reconciler(
    nats_url: str, data_dir: Path, url: str, **overrides: Any
) -> InProcessReconciler:
    settings = make_settings(nats_url, data_dir)
    settings = settings.model_copy(
        update={"platform": "kubernetes", "kubernetes": kube_settings(url, **overrides)}
    )
    running = InProcessReconciler(settings)
    await running.start()
    return running


async def route_urls(bus: messaging.Bus, count: int) -> list[str] | None:
    kv = await bus.kv(subjects.ROUTES_BUCKET)
    try:
        entry = await kv.get(f"{NS}.qwen-7b")
    except Exception:  # not there yet
        return None
    table = events.RouteTable.from_bytes(entry.value or b"")
    urls = sorted(b.url for b in table.backends)
    return urls if len(urls) == count else None
