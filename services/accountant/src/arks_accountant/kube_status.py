"""StatusWriter of the Kubernetes platform: the ArksQuota status subresource.

Read, merge, write back with the resourceVersion read: GET `.../arksquotas/<name>/status`,
`merge_status()` (which keeps every field the accountant does not own, such as the
reconciler's conditions), PUT `.../status`. A 409 means someone wrote the object since
(the reconciler, another accountant process): read again and retry. Only the status
subresource is written, so the accountant needs `get` on `arksquotas` and `get`/`update`
on `arksquotas/status` (deploy/base/accountant.yaml), nothing else.

This is the accountant's only use of the Kubernetes API (import-linter allows this
module and no other one of the accountant).

Failure modes: 404 → False (no such ArksQuota; nothing written). 401/403 (credentials
or RBAC), 429, 5xx, timeouts and connection errors → RetryableError with what to fix or
that it is transient; the status loop logs it and writes again at its next pass.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from arks_accountant.status import QuotaStatusReport, merge_status
from arks_common import kubeapi
from arks_common.errors import RetryableError
from arks_common.resources import GROUP, PLURALS, VERSION
from arks_common.settings import KubernetesSettings

log = logging.getLogger(__name__)

KIND = "ArksQuota"
PLURAL = PLURALS[KIND]
_CONFLICT_ATTEMPTS = 10


async def api_client(settings: KubernetesSettings) -> client.ApiClient:
    """An API client as `settings` says (`arks_common.kubeapi.api_client`)."""
    return await kubeapi.api_client(settings, otherwise="or choose another ARKS_STATUS__WRITER")


class KubernetesStatusWriter:
    """Writes quota usage into the status subresource of ArksQuota objects."""

    def __init__(self, api: client.ApiClient, *, timeout: float = 10.0) -> None:
        self._objects = client.CustomObjectsApi(api)
        self._timeout = timeout

    async def write_quota_status(self, report: QuotaStatusReport) -> bool:
        ns, name = report.namespace, report.name
        for _ in range(_CONFLICT_ATTEMPTS):
            current = await self._call(
                self._objects.get_namespaced_custom_object_status(
                    GROUP, VERSION, ns, PLURAL, name, _request_timeout=self._timeout
                ),
                report,
            )
            if current is None:
                return False
            status = merge_status(current.get("status") or {}, report)
            if status is None:
                return True
            body = {
                "apiVersion": current.get("apiVersion", f"{GROUP}/{VERSION}"),
                "kind": KIND,
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "resourceVersion": current["metadata"]["resourceVersion"],
                },
                "status": status,
            }
            try:
                written = await self._call(
                    self._objects.replace_namespaced_custom_object_status(
                        GROUP, VERSION, ns, PLURAL, name, body, _request_timeout=self._timeout
                    ),
                    report,
                )
            except _Conflict:
                continue
            return written is not None
        raise RetryableError(f"ArksQuota {ns}/{name} keeps changing under the status write")

    async def _call(self, request: Any, report: QuotaStatusReport) -> dict[str, Any] | None:
        """The object the API answered, None on 404; the rest as RetryableError."""
        where = f"ArksQuota {report.namespace}/{report.name}"
        try:
            answer: dict[str, Any] = await request
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status == 409:
                raise _Conflict from exc
            if exc.status in (401, 403):
                raise RetryableError(
                    f"the Kubernetes API refused the status write of {where} ({exc.status}): "
                    "grant the accountant's service account get on arksquotas and get/update "
                    "on arksquotas/status",
                    delay=10.0,
                ) from exc
            raise RetryableError(
                f"the Kubernetes API answered {exc.status} for {where}: {exc.reason}"
            ) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RetryableError(f"the Kubernetes API is unreachable: {exc!r}") from exc
        return answer


class _Conflict(Exception):
    """The object changed since it was read (HTTP 409)."""
