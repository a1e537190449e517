"""Fixtures of the dev cluster's tests: a served API, a kubernetes-asyncio client and a
real kubectl pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from arks_devcluster import FakeKubeApi, serve
from arks_devcluster.testing import Kubectl

TOKEN = "admin-token"


@dataclass
class Cluster:
    api: FakeKubeApi
    url: str
    kubectl: Kubectl
    client: client.ApiClient


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with serve() as (api, url):
        configuration = client.Configuration(host=url)
        configuration.api_key = {"BearerToken": TOKEN}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        async with client.ApiClient(configuration) as api_client:
            yield Cluster(api, url, Kubectl.for_server(tmp_path, url, TOKEN), api_client)
