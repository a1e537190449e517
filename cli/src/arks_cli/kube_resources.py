"""The Kubernetes platform's objects: arks.ai custom resources through the API server.

`open_kube` connects with the kubeconfig (`--kubeconfig`, else `$KUBECONFIG` or
`~/.kube/config`, or the service account inside a pod; `--context`, else the current
context) through `arks_common.kubeapi`, the one Kubernetes client of Arks; this is the
only CLI module that imports it. `KubeResources` is `backends.Resources` over it:

- `apply`: server-side apply (`application/apply-patch+yaml`, field manager `arks-cli`,
  `force=true`) of the document as the file wrote it, without server-set metadata and
  status; `created` when the object did not exist, else `configured` or `unchanged` as
  its resourceVersion moved or not (a no-op apply writes nothing);
- `get`/`list`: objects as kubectl prints them (`managedFields` left out), lists read
  in pages of 500;
- `delete`: DELETE with background propagation; with finalizers the API server only
  sets `deletionTimestamp`, and the reconciler releases the object;
- `events`: the object's core/v1 Events (`fieldSelector` on its uid, name and
  namespace), oldest first by last timestamp. Events the user may not list are left out,
  as kubectl describe does.

Failures: 404, 409 and 400/422 stay the store's errors for the commands to report per
object. A refused request (401, 403) is a `CliError` with the server's message and the
RBAC to ask for; an unreachable server (or a 429/5xx) one naming the server and the
kubeconfig to check.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from arks_cli.describing import EventLine
from arks_cli.errors import CliError, NotRunningError
from arks_cli.manifests import Manifest
from arks_cli.printing import parse_timestamp
from arks_common import kubeapi
from arks_common.errors import PermanentError, RetryableError
from arks_common.resources import API_VERSION, GROUP, PLURALS, VERSION, KindInfo
from arks_common.settings import KubernetesSettings
from arks_common.store import ConflictError, NotFoundError

Obj = dict[str, Any]
FIELD_MANAGER = "arks-cli"
PAGE = 500
REQUEST_TIMEOUT = 15.0
EPOCH = datetime.fromtimestamp(0, UTC)
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_SERVER_FIELDS = (
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "generation",
    "managedFields",
    "resourceVersion",
    "selfLink",
    "uid",
)


class ForbiddenError(CliError):
    """The API server refused the request (401/403)."""


def _kubeconfig_files(kubeconfig: str | None) -> list[Path]:
    if kubeconfig:
        return [Path(kubeconfig).expanduser()]
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return [Path(p).expanduser() for p in listed] or [Path("~/.kube/config").expanduser()]


def context_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The namespace of the kubeconfig's context (as kubectl merges files: the first one
    naming a value wins); the pod's own inside a cluster without a kubeconfig;
    else `default`."""
    documents: list[Obj] = []
    for path in _kubeconfig_files(kubeconfig):
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if isinstance(loaded, dict):
            documents.append(loaded)
    if not documents and not kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST"):
        with contextlib.suppress(OSError):
            return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    current = context or next(
        (str(d["current-context"]) for d in documents if d.get("current-context")), None
    )
    for document in documents:
        for entry in document.get("contexts") or []:
            if isinstance(entry, dict) and entry.get("name") == current:
                namespace = (entry.get("context") or {}).get("namespace")
                return str(namespace) if namespace else "default"
    return "default"


def _path(kind: str, namespace: str | None, name: str | None = None) -> str:
    parts = [f"/apis/{GROUP}/{VERSION}"]
    if namespace is not None:
        parts.append(f"namespaces/{namespace}")
    parts.append(PLURALS[kind])
    if name is not None:
        parts.append(name)
    return "/".join(parts)


def _resource(kind: str) -> str:
    return f"{PLURALS[kind]}.{GROUP}"


def _shown(obj: Obj, kind: str) -> Obj:
    """An object as kubectl shows it: apiVersion and kind, no managedFields."""
    obj.setdefault("apiVersion", API_VERSION)
    obj.setdefault("kind", kind)
    (obj.get("metadata") or {}).pop("managedFields", None)
    return obj


def applied_document(document: Obj) -> Obj:
    """What server-side apply sends: the document without server-set fields or status."""
    body = copy.deepcopy(document)
    body.pop("status", None)
    meta = body.setdefault("metadata", {})
    for key in _SERVER_FIELDS:
        meta.pop(key, None)
    return body


def _server_message(exc: BaseException | None) -> str:
    """The `message` of the Status an ApiException (the cause) carries, if any."""
    raw = getattr(exc, "body", None)
    try:
        body = json.loads(raw) if raw else {}
    except (TypeError, ValueError):
        return ""
    return str(body.get("message") or "") if isinstance(body, dict) else ""


def _timestamp(value: Any) -> datetime | None:
    return parse_timestamp(value) if isinstance(value, str) and value else None


def event_line(event: Obj) -> EventLine:
    """A core/v1 Event as a row of describe's Events table."""
    last = (
        _timestamp(event.get("lastTimestamp"))
        or _timestamp(event.get("eventTime"))
        or _timestamp(event.get("firstTimestamp"))
        or _timestamp((event.get("metadata") or {}).get("creationTimestamp"))
    )
    series = event.get("series") or {}
    source = event.get("source") or {}
    component = source.get("component") or event.get("reportingComponent") or ""
    return EventLine(
        type=str(event.get("type") or ""),
        reason=str(event.get("reason") or ""),
        at=last,
        message=str(event.get("message") or "").strip(),
        source=", ".join(str(p) for p in (component, source.get("host")) if p),
        count=int(series.get("count") or event.get("count") or 1),
        first_at=_timestamp(event.get("firstTimestamp")) or _timestamp(event.get("eventTime")),
    )


class KubeResources:
    """`backends.Resources` over the Kubernetes API."""

    def __init__(self, api: kubeapi.KubeApi, *, server: str, config: str) -> None:
        self.api = api
        self.server = server
        self.config = config
        """The kubeconfig (and context) in use, as error messages name it."""

    async def _call(
        self,
        method: str,
        path: str,
        *,
        verb: str,
        resource: str,
        namespace: str | None,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> Obj:
        where = f"{verb} {resource}" + (f" in namespace {namespace}" if namespace else "")
        try:
            return await self.api.request(
                method, path, query=query, body=body, content_type=content_type, where=where
            )
        except ConflictError:
            raise
        except RetryableError as exc:
            raise self._failure(exc, verb, resource, namespace) from exc

    def _failure(
        self, exc: RetryableError, verb: str, resource: str, namespace: str | None
    ) -> CliError:
        cause = exc.__cause__
        status = getattr(cause, "status", None)
        if status == 401:
            return ForbiddenError(
                f"the Kubernetes API at {self.server} did not accept the credentials of "
                f"{self.config} (401 Unauthorized): log in again or fix the user"
            )
        if status == 403:
            scope = f"in namespace {namespace}" if namespace else "in every namespace"
            message = _server_message(cause)
            return ForbiddenError(
                f"Error from server (Forbidden): {message or 'forbidden'}\n"
                f"your user needs RBAC `{verb}` on `{resource}` {scope} "
                "(a Role or ClusterRole bound to it; see docs/cli.md)"
            )
        if isinstance(status, int):
            return CliError(
                f"the Kubernetes API at {self.server} answered {status} to {verb} "
                f"{resource}: {_server_message(cause) or exc}; try again"
            )
        return NotRunningError(
            f"cannot reach the Kubernetes API at {self.server} ({cause or exc}): is the "
            f"cluster running, and does {self.config} point at it?"
        )

    async def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        try:
            obj = await self._call(
                "GET",
                _path(kind, namespace, name),
                verb="get",
                resource=_resource(kind),
                namespace=namespace,
            )
        except NotFoundError:
            return None
        return _shown(obj, kind)

    async def list(self, kind: str, namespace: str | None) -> list[Obj]:
        items: list[Obj] = []
        query: dict[str, Any] = {"limit": PAGE}
        while True:
            page = await self._call(
                "GET",
                _path(kind, namespace),
                verb="list",
                resource=_resource(kind),
                namespace=namespace,
                query=query,
            )
            items.extend(_shown(item, kind) for item in page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                break
            query = {"limit": PAGE, "continue": token}
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return items

    async def apply(self, manifest: Manifest) -> str:
        body = applied_document(manifest.document)
        kind, meta = str(body["kind"]), body["metadata"]
        namespace, name = str(meta["namespace"]), str(meta["name"])
        before = await self.get(kind, namespace, name)
        after = await self._call(
            "PATCH",
            _path(kind, namespace, name),
            verb="patch",
            resource=_resource(kind),
            namespace=namespace,
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=body,
            content_type=kubeapi.APPLY_PATCH,
        )
        if before is None:
            return "created"
        version = (after.get("metadata") or {}).get("resourceVersion")
        return "unchanged" if version == before["metadata"].get("resourceVersion") else "configured"

    async def create(self, obj: Obj) -> Obj:
        kind, namespace = str(obj["kind"]), str(obj["metadata"].get("namespace", "default"))
        created = await self._call(
            "POST",
            _path(kind, namespace),
            verb="create",
            resource=_resource(kind),
            namespace=namespace,
            body=obj,
        )
        return _shown(created, kind)

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        try:
            await self._call(
                "DELETE",
                _path(kind, namespace, name),
                verb="delete",
                resource=_resource(kind),
                namespace=namespace,
                query={"propagationPolicy": "Background"},
            )
        except NotFoundError:
            return False
        return True

    async def events(self, info: KindInfo, obj: Obj) -> builtins.list[EventLine]:
        meta = obj["metadata"]
        namespace = str(meta.get("namespace", "default"))
        selector = ",".join(
            f"involvedObject.{key}={value}"
            for key, value in (
                ("uid", meta.get("uid")),
                ("name", meta["name"]),
                ("namespace", namespace),
            )
            if value
        )
        try:
            answer = await self._call(
                "GET",
                f"/api/v1/namespaces/{namespace}/events",
                verb="list",
                resource="events",
                namespace=namespace,
                query={"fieldSelector": selector},
            )
        except ForbiddenError:
            return []
        lines: builtins.list[EventLine] = [
            event_line(e) for e in answer.get("items") or [] if isinstance(e, dict)
        ]
        lines.sort(key=lambda line: line.at or EPOCH)
        return lines


def _config_label(kubeconfig: str | None, context: str | None) -> str:
    if kubeconfig:
        where = f"the kubeconfig {kubeconfig}"
    elif os.environ.get("KUBECONFIG"):
        where = f"$KUBECONFIG ({os.environ['KUBECONFIG']})"
    else:
        where = "~/.kube/config"
    return f"{where} (context {context})" if context else where


@contextlib.asynccontextmanager
async def open_kube(kubeconfig: str | None, context: str | None) -> AsyncIterator[KubeResources]:
    """The arks.ai objects of the cluster the kubeconfig names (CliError when unusable)."""
    settings = KubernetesSettings(
        kubeconfig=kubeconfig, context=context, request_timeout=REQUEST_TIMEOUT
    )
    try:
        client = await kubeapi.api_client(settings)
    except PermanentError as exc:
        raise CliError(
            f"no usable Kubernetes configuration ({exc.__cause__ or exc}): give --kubeconfig "
            "FILE (and --context NAME), set KUBECONFIG, or run inside a pod"
        ) from exc
    try:
        yield KubeResources(
            kubeapi.KubeApi(client, timeout=REQUEST_TIMEOUT),
            server=str(client.configuration.host),
            config=_config_label(kubeconfig, context),
        )
    finally:
        await client.close()
