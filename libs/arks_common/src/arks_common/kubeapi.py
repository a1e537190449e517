"""The Kubernetes API as the reconciler and the accountant use it (kubernetes-asyncio).

`api_client(settings)` builds a client as `KubernetesSettings` says: a plain URL, the
in-cluster service account, or a kubeconfig. `KubeApi` sends raw JSON requests through
it (`request`) and streams watches (`stream`), so every kind — built-in or custom — is a
dict, as kubectl shows it, and the typed models of kubernetes-asyncio never slow the hot
path. It counts requests by verb and status code for the services' metrics.

Errors say whether to retry (the store's error types, so callers handle both platforms
alike): 404 → `NotFoundError`; 409 → `ConflictError` (stale resourceVersion) or
`AlreadyExistsError` (reason AlreadyExists); 410 → `ExpiredError` (relist); 400/422 →
`InvalidError` (the object is wrong: fix it); 401/403 → `RetryableError` naming the RBAC
to grant; 429, 5xx, timeouts and connection errors → `RetryableError`.

Only the reconciler, the accountant's status writer and the CLI's Kubernetes backend
import this module (import-linter), and the
package extra `arks-common[kube]` brings kubernetes-asyncio.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from arks_common.errors import PermanentError, RetryableError
from arks_common.settings import KubernetesSettings
from arks_common.store import AlreadyExistsError, ConflictError, NotFoundError

Obj = dict[str, Any]
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"


class ExpiredError(RetryableError):
    """410 Gone: the resourceVersion is too old to watch or continue from; list again."""


class InvalidError(PermanentError):
    """400/422: the API refused the object; the message says which field."""


async def api_client(settings: KubernetesSettings, *, otherwise: str = "") -> client.ApiClient:
    """An API client as `settings` says; `otherwise` names an alternative setting for the
    error message (e.g. "or choose another ARKS_STATUS__WRITER")."""
    configuration = client.Configuration()
    try:
        if settings.api_url:
            configuration.host = settings.api_url
        elif settings.kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            await config.load_kube_config(
                config_file=settings.kubeconfig,
                context=settings.context,
                client_configuration=configuration,
                persist_config=False,
            )
    except (ConfigException, OSError) as exc:
        raise PermanentError(
            f"no usable Kubernetes configuration ({exc}): run in a pod with a service "
            "account, or set ARKS_KUBERNETES__KUBECONFIG (and __CONTEXT) or "
            f"ARKS_KUBERNETES__API_URL{'; ' + otherwise if otherwise else ''}"
        ) from exc
    return client.ApiClient(configuration)


def _message(exc: ApiException) -> tuple[str, str]:
    """(reason, message) of a Kubernetes Status body, else the HTTP reason."""
    try:
        body = json.loads(exc.body or b"{}")
    except (TypeError, ValueError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    return str(body.get("reason") or ""), str(body.get("message") or exc.reason or "")


def api_error(exc: ApiException, where: str, *, grant: str = "") -> Exception:
    """The error to raise for an API answer `exc` about `where`."""
    reason, message = _message(exc)
    status = exc.status or 0
    text = f"{where}: {message}" if message else where
    if status == 404:
        return NotFoundError(text)
    if status == 409:
        if reason == "AlreadyExists":
            return AlreadyExistsError(text)
        return ConflictError(text, delay=0.1)
    if status == 410:
        return ExpiredError(text, delay=0.0)
    if status in (400, 422):
        return InvalidError(text)
    if status in (401, 403):
        hint = f": grant {grant}" if grant else ""
        return RetryableError(
            f"the Kubernetes API refused {where} ({status}){hint}", delay=10.0, reason="Forbidden"
        )
    return RetryableError(f"the Kubernetes API answered {status} for {where}: {message}")


class KubeApi:
    """Raw JSON requests and watch streams over one kubernetes-asyncio `ApiClient`."""

    def __init__(self, api: client.ApiClient, *, timeout: float = 10.0) -> None:
        self.api = api
        self.timeout = timeout
        self.requests: dict[tuple[str, str], int] = {}
        """Requests by (verb, status code or "error"), for metrics."""

    def _count(self, verb: str, code: int | str) -> None:
        key = (verb, str(code))
        self.requests[key] = self.requests.get(key, 0) + 1

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str | None = None,
        where: str = "",
        grant: str = "",
        seconds: float | None = None,
    ) -> Obj:
        """The JSON answer of `method path` (errors as the module docstring says);
        `seconds` overrides the client's timeout for this request."""
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            answer = await self.api.call_api(
                path,
                method,
                query_params=list((query or {}).items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                response_types_map={200: "object", 201: "object", 202: "object"},
                _return_http_data_only=True,
                _request_timeout=seconds or self.timeout,
            )
        except ApiException as exc:
            self._count(method, exc.status or "error")
            raise api_error(exc, where or f"{method} {path}", grant=grant) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._count(method, "error")
            raise RetryableError(f"the Kubernetes API is unreachable: {exc!r}") from exc
        self._count(method, 200)
        return answer if isinstance(answer, dict) else {}

    async def stream(
        self, path: str, *, query: dict[str, Any], where: str = "", grant: str = ""
    ) -> AsyncIterator[Obj]:
        """The events of a watch request (`watch=true` is added), one dict per line; ends
        when the server ends the stream."""
        params = [*query.items(), ("watch", "true")]
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.timeout,
            sock_read=float(query.get("timeoutSeconds", 300)) + 30,
        )
        try:
            response = await self.api.call_api(
                path,
                "GET",
                query_params=params,
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=timeout,
            )
        except ApiException as exc:
            self._count("WATCH", exc.status or "error")
            raise api_error(exc, where or f"watch {path}", grant=grant) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._count("WATCH", "error")
            raise RetryableError(f"the Kubernetes API is unreachable: {exc!r}") from exc
        self._count("WATCH", response.status)
        if not 200 <= response.status <= 299:
            body = await response.read()
            response.release()
            failed = ApiException(status=response.status, reason=response.reason)
            failed.body = body
            raise api_error(failed, where or f"watch {path}", grant=grant)
        try:
            while True:
                try:
                    line = await response.content.readline()
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    raise RetryableError(f"the watch of {path} broke: {exc!r}") from exc
                if not line:
                    return
                line = line.strip()
                if line:
                    yield json.loads(line)
        finally:
            response.release()
