"""Arks' dev cluster: a one-machine Kubernetes API server for development and tests.

    from arks_devcluster import FakeKubeApi, serve

    async with serve() as (api, url):      # in-process, on a free 127.0.0.1 port
        ...                                # kubernetes-asyncio / kubectl against `url`

`arks-devcluster serve --port N --kubeconfig-out PATH` runs it standalone.
See docs/dev-cluster.md for what it implements and how it differs from a real cluster.
"""

from arks_devcluster.api import FakeKubeApi, default_types
from arks_devcluster.errors import ApiError
from arks_devcluster.resources import ResourceType
from arks_devcluster.server import serve

__all__ = ["ApiError", "FakeKubeApi", "ResourceType", "default_types", "serve"]
