"""ArksQuota status on Kubernetes: the real kubernetes-asyncio client against the fake
API server (`arks_devcluster`), the writer alone and inside the service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import yaml
from kubernetes_asyncio import client

from arks_accountant.kube_status import KubernetesStatusWriter, api_client
from arks_accountant.status import QuotaStatusReport
from arks_accountant.testing import (
    make_settings,
    publish_usage,
    put_spec,
    running_accountant,
    status_quota,
    wait_for,
)
from arks_common.errors import PermanentError, RetryableError
from arks_common.settings import KubernetesSettings
from arks_common.testing.builders import make_usage_event
from arks_devcluster import FakeKubeApi, serve

NS, NAME = "default", "basic-quota"
AT = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def arks_quota() -> dict:
    obj, _ = status_quota()
    # written by the reconciler: the accountant must keep it
    return {**obj, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


def report(prompt: int = 10, total: int = 30, name: str = NAME) -> QuotaStatusReport:
    return QuotaStatusReport(
        namespace=NS,
        name=name,
        used={"prompt": prompt, "total": total},
        spent=Decimal("0.25"),
        currency="USD",
        period_start=None,
        at=AT,
    )


@pytest.fixture
async def kube() -> AsyncIterator[tuple[FakeKubeApi, str, KubernetesStatusWriter]]:
    async with (
        serve() as (api, url),
        client.ApiClient(client.Configuration(host=url)) as api_client,
    ):
        yield api, url, KubernetesStatusWriter(api_client, timeout=5)


async def test_the_status_subresource_is_written_and_other_fields_kept(kube):
    api, _, writer = kube
    api.create(arks_quota())
    assert await writer.write_quota_status(report())
    obj = api.get("arks.ai/v1", "arksquotas", NS, NAME)
    status = obj["status"]
    assert status["conditions"] == [{"type": "Ready", "status": "True"}]
    assert [(q["type"], q["used"]) for q in status["quotaStatus"]] == [
        ("prompt", 10),
        ("total", 30),
    ]
    assert status["quotaStatus"][0]["lastUpdateTime"] == "2026-11-28T12:00:00Z"
    assert status["budgetStatus"] == {
        "spent": "0.25",
        "currency": "USD",
        "lastUpdateTime": "2026-11-28T12:00:00Z",
    }
    assert obj["metadata"]["generation"] == 1
    version = obj["metadata"]["resourceVersion"]
    writes = len([r for r in api.requests if r[0] == "PUT"])

    assert await writer.write_quota_status(report())  # nothing changed: no write
    assert len([r for r in api.requests if r[0] == "PUT"]) == writes
    assert api.get("arks.ai/v1", "arksquotas", NS, NAME)["metadata"]["resourceVersion"] == version


async def test_a_missing_quota_is_reported_and_nothing_is_created(kube):
    api, _, writer = kube
    assert not await writer.write_quota_status(report(name="gone"))
    assert api.get("arks.ai/v1", "arksquotas", NS, "gone") is None


async def test_conflicts_are_retried_and_failures_are_retryable_with_the_fix(kube):
    api, _, writer = kube
    api.create(arks_quota())
    api.fail_next(409, method="PUT")  # someone wrote the object between our read and our write
    assert await writer.write_quota_status(report(prompt=1))
    assert api.get("arks.ai/v1", "arksquotas", NS, NAME)["status"]["quotaStatus"][0]["used"] == 1

    api.fail_next(403)
    with pytest.raises(RetryableError, match="arksquotas/status"):
        await writer.write_quota_status(report(prompt=2))
    api.fail_next(503)
    with pytest.raises(RetryableError, match="503"):
        await writer.write_quota_status(report(prompt=2))
    assert await writer.write_quota_status(report(prompt=2))


async def test_the_service_writes_usage_into_kubernetes(bus, redis, nats_server, valkey_server):
    """ARKS_STATUS__WRITER=kubernetes: the accountant builds its client from settings and
    keeps ArksQuota.status current as usage is applied."""
    _, spec = status_quota()
    await put_spec(bus, spec)
    async with serve() as (api, url):
        api.create(arks_quota())
        settings = make_settings(
            nats_server.url,
            valkey_server.url,
            status={"writer": "kubernetes", "interval": 0.2},
            kubernetes=KubernetesSettings(api_url=url),
        )
        async with running_accountant(settings) as acct:
            await publish_usage(
                bus, *(make_usage_event(prompt_tokens=100, completion_tokens=50) for _ in range(3))
            )

            def status_written() -> bool:
                obj = api.get("arks.ai/v1", "arksquotas", NS, NAME)
                entries = obj.get("status", {}).get("quotaStatus", [])
                return [e["used"] for e in entries] == [300, 450]

            await wait_for(status_written, what="status in Kubernetes")
            await wait_for(
                lambda: acct.metric("arks_accountant_status_writes_total", outcome="written") >= 1,
                what="the write counted",
            )
        status = api.get("arks.ai/v1", "arksquotas", NS, NAME)["status"]
    assert Decimal(status["budgetStatus"]["spent"]) == Decimal("0.0012")
    assert status["conditions"] == [{"type": "Ready", "status": "True"}]


async def test_a_kubeconfig_is_used_and_a_missing_one_is_a_clear_error(tmp_path):
    with pytest.raises(PermanentError, match="ARKS_KUBERNETES__KUBECONFIG"):
        await api_client(KubernetesSettings(kubeconfig=str(tmp_path / "missing")))
    async with serve() as (api, url):
        api.create(arks_quota())
        kubeconfig = tmp_path / "config"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": url}}],
                    "users": [{"name": "arks", "user": {"token": "t"}}],
                    "contexts": [
                        {"name": "other", "context": {"cluster": "nowhere", "user": "arks"}},
                        {"name": "fake", "context": {"cluster": "fake", "user": "arks"}},
                    ],
                    "current-context": "other",
                }
            )
        )
        settings = KubernetesSettings(kubeconfig=str(kubeconfig), context="fake")
        async with await api_client(settings) as api_client_:
            assert await KubernetesStatusWriter(api_client_).write_quota_status(report())
    assert api.get("arks.ai/v1", "arksquotas", NS, NAME)["status"]["quotaStatus"]
