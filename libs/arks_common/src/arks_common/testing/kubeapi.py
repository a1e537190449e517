"""An in-process fake Kubernetes API server, for tests of code that uses a real client.

Nothing real can run here (no kube-apiserver, no etcd), so this is one of the two fakes
the project allows. It serves the REST paths and the semantics clients rely on, over real
HTTP (uvicorn), so kubernetes-asyncio talks to it exactly as to a cluster:

- paths `/api/v1/...` and `/apis/<group>/<version>/...`, namespaced and cluster-wide
  lists, for the resource types registered (`ResourceType`; the six arks.ai kinds and the
  core types Arks touches are registered by default);
- `metadata.resourceVersion` from one counter, `uid`, `creationTimestamp`, `generateName`,
  `generation` bumped when anything but metadata and status changes;
- optimistic concurrency: an update carrying a stale resourceVersion gets 409 Conflict;
- the status subresource: `/status` changes only `status`, the main path never does
  (and `status` is dropped on create), as for a CRD with `subresources.status`;
- JSON merge patch (RFC 7386) and JSON patch (RFC 6902); strategic merge patch on
  built-in types is applied as a merge patch, on custom resources refused with 415, as the
  real server does; server-side apply is refused with 415 (not implemented here);
- label selectors on lists and watches (`=`, `==`, `!=`, `in`, `notin`, exists, `!`);
- finalizers: deleting an object that has some sets `deletionTimestamp`; the object goes
  when the last finalizer is removed; ownerReference garbage collection (background);
- watch (`?watch=true`) as a stream of JSON lines from a resourceVersion, with
  `ADDED`/`MODIFIED`/`DELETED` events, `BOOKMARK`s when asked, an `ERROR` event with
  410 Expired for a version older than the kept history, and `timeoutSeconds`;
- errors as `Status` objects with the real reasons and codes.

Failure injection for tests: `FakeKubeApi.fail_next(status, count)` answers the next
requests with that status.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from arks_common.resources import GROUP, KIND_INFO, VERSION

Obj = dict[str, Any]

_HISTORY = 1000
_BOOKMARK_EVERY = 1.0


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status_subresource: bool = True
    custom: bool = True
    """A custom resource (no strategic merge patch)."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


def default_types() -> list[ResourceType]:
    arks = [ResourceType(GROUP, VERSION, info.plural, info.kind) for info in KIND_INFO.values()]
    builtin = [
        ResourceType("", "v1", "pods", "Pod", custom=False),
        ResourceType("", "v1", "services", "Service", custom=False),
        ResourceType("", "v1", "configmaps", "ConfigMap", status_subresource=False, custom=False),
        ResourceType("", "v1", "secrets", "Secret", status_subresource=False, custom=False),
        ResourceType("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", custom=False),
        ResourceType("", "v1", "events", "Event", status_subresource=False, custom=False),
        ResourceType("", "v1", "namespaces", "Namespace", namespaced=False, custom=False),
        ResourceType("apps", "v1", "deployments", "Deployment", custom=False),
        ResourceType("batch", "v1", "jobs", "Job", custom=False),
        ResourceType(
            "coordination.k8s.io", "v1", "leases", "Lease", status_subresource=False, custom=False
        ),
    ]
    return arks + builtin


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def response(self) -> JSONResponse:
        return JSONResponse(
            status_from(self.code, self.reason, self.message, self.details), self.code
        )


def status_from(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details or {},
        "code": code,
    }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------- patches
def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"bad JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 (add, remove, replace, move, copy, test)."""
    if not isinstance(ops, list):
        raise ApiError(400, "BadRequest", "a JSON patch is a list of operations")
    doc = copy.deepcopy(doc)

    def parent(parts: list[str]) -> tuple[Any, str]:
        node = doc
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node, parts[-1]

    def get(parts: list[str]) -> Any:
        node = doc
        for part in parts:
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node

    def remove(parts: list[str]) -> Any:
        node, last = parent(parts)
        return node.pop(int(last)) if isinstance(node, list) else node.pop(last)

    def add(parts: list[str], value: Any) -> None:
        nonlocal doc
        if not parts:
            doc = value
            return
        node, last = parent(parts)
        if isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), value)
        else:
            node[last] = value

    try:
        for op in ops:
            kind, parts = op["op"], _pointer(op["path"])
            if kind == "add":
                add(parts, copy.deepcopy(op["value"]))
            elif kind == "remove":
                remove(parts)
            elif kind == "replace":
                get(parts)
                remove(parts)
                add(parts, copy.deepcopy(op["value"]))
            elif kind in ("move", "copy"):
                source = _pointer(op["from"])
                value = remove(source) if kind == "move" else copy.deepcopy(get(source))
                add(parts, value)
            elif kind == "test":
                if get(parts) != op["value"]:
                    raise ApiError(422, "Invalid", f"test failed at {op['path']}")
            else:
                raise ApiError(422, "Invalid", f"unknown JSON patch op {kind!r}")
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise ApiError(422, "Invalid", f"JSON patch does not apply: {exc!r}") from exc
    return doc


# ----------------------------------------------------------------------------- selectors
_REQUIREMENT = re.compile(
    r"^\s*(?P<neg>!)?(?P<key>[A-Za-z0-9._/-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9._-]*)|\s+(?P<set>in|notin)\s*\((?P<values>[^)]*)\))?\s*$"
)


def _split_selector(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return parts


@dataclass(frozen=True)
class _Requirement:
    key: str
    op: str
    """eq, ne, in, notin, exists, absent"""
    values: frozenset[str] = frozenset()

    def holds(self, labels: dict[str, str]) -> bool:
        value = labels.get(self.key)
        if self.op == "eq":
            return value in self.values
        if self.op in ("ne", "notin"):
            return value not in self.values
        if self.op == "in":
            return value in self.values
        if self.op == "exists":
            return self.key in labels
        return self.key not in labels


def label_matcher(selector: str | None) -> Callable[[Obj], bool]:
    requirements: list[_Requirement] = []
    for part in _split_selector(selector or ""):
        m = _REQUIREMENT.match(part)
        if m is None:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {part!r}")
        key = m["key"]
        if m["op"] in ("=", "=="):
            requirements.append(_Requirement(key, "eq", frozenset([m["value"]])))
        elif m["op"] == "!=":
            requirements.append(_Requirement(key, "ne", frozenset([m["value"]])))
        elif m["set"]:
            values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
            requirements.append(_Requirement(key, m["set"], values))
        else:
            requirements.append(_Requirement(key, "absent" if m["neg"] else "exists"))

    def matches(obj: Obj) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(r.holds(labels) for r in requirements)

    return matches


# ----------------------------------------------------------------------------- store
@dataclass
class _Event:
    rv: int
    type: str
    rtype: ResourceType
    obj: Obj


@dataclass
class _Watcher:
    rtype: ResourceType
    namespace: str | None
    matches: Callable[[Obj], bool]
    queue: asyncio.Queue[_Event] = field(default_factory=asyncio.Queue)


class FakeKubeApi:
    """The objects, their history and the HTTP app serving them."""

    def __init__(self, types: Iterable[ResourceType] | None = None) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        for rtype in types if types is not None else default_types():
            self.register(rtype)
        self._objects: dict[tuple[ResourceType, str, str], Obj] = {}
        self._rv = 0
        self._history: list[_Event] = []
        self._watchers: list[_Watcher] = []
        self._failures: list[tuple[int, str | None]] = []
        self.requests: list[tuple[str, str]] = []
        """(method, path) of every request, for tests."""
        self.app = Starlette(
            routes=[
                Route("/api/{version}/{rest:path}", self._handle, methods=_METHODS),
                Route("/apis/{group}/{version}/{rest:path}", self._handle, methods=_METHODS),
            ]
        )

    def register(self, rtype: ResourceType) -> None:
        self._types[(rtype.group, rtype.version, rtype.plural)] = rtype

    def fail_next(self, status: int, count: int = 1, *, method: str | None = None) -> None:
        """Answer the next `count` requests (of `method`, if given) with `status`
        (e.g. 409 to a PUT as if someone wrote the object first, 403, 429, 503)."""
        self._failures.extend([(status, method)] * count)

    # ------------------------------------------------------------------ direct access
    def get(self, api_version: str, plural: str, namespace: str, name: str) -> Obj | None:
        rtype = self._type_of(api_version, plural)
        found = self._objects.get((rtype, namespace if rtype.namespaced else "", name))
        return copy.deepcopy(found) if found is not None else None

    def create(self, obj: Obj) -> Obj:
        """Create an object as a client would (status kept: a test may seed it)."""
        api_version, kind = obj["apiVersion"], obj["kind"]
        rtype = next(
            (t for t in self._types.values() if t.api_version == api_version and t.kind == kind),
            None,
        )
        if rtype is None:
            raise KeyError(f"{api_version} {kind} is not registered")
        namespace = obj.get("metadata", {}).get("namespace", "default")
        return copy.deepcopy(self._create(rtype, namespace, copy.deepcopy(obj), keep_status=True))

    def _type_of(self, api_version: str, plural: str) -> ResourceType:
        group, _, version = api_version.rpartition("/")
        return self._types[(group, version, plural)]

    # ------------------------------------------------------------------ semantics
    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _record(self, kind: str, rtype: ResourceType, obj: Obj) -> None:
        event = _Event(int(obj["metadata"]["resourceVersion"]), kind, rtype, copy.deepcopy(obj))
        self._history.append(event)
        del self._history[:-_HISTORY]
        for watcher in self._watchers:
            if watcher.rtype is rtype and (
                watcher.namespace is None
                or watcher.namespace == obj["metadata"].get("namespace", "")
            ):
                watcher.queue.put_nowait(event)

    def _create(self, rtype: ResourceType, namespace: str, body: Obj, *, keep_status: bool) -> Obj:
        meta = body.setdefault("metadata", {})
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise ApiError(422, "Invalid", "metadata.name: Required value")
            meta["name"] = prefix + uuid.uuid4().hex[:5]
        name = meta["name"]
        ns = namespace if rtype.namespaced else ""
        key = (rtype, ns, name)
        if key in self._objects:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{rtype.plural}.{rtype.group} "{name}" already exists',
                {"name": name, "group": rtype.group, "kind": rtype.plural},
            )
        body["apiVersion"], body["kind"] = rtype.api_version, rtype.kind
        if rtype.namespaced:
            meta["namespace"] = ns
        meta.update(
            uid=str(uuid.uuid4()),
            creationTimestamp=_now(),
            generation=1,
            resourceVersion=str(self._next_rv()),
        )
        meta.pop("deletionTimestamp", None)
        if rtype.status_subresource and not keep_status:
            body.pop("status", None)
        self._objects[key] = body
        self._record("ADDED", rtype, body)
        return body

    def _current(self, rtype: ResourceType, namespace: str, name: str) -> Obj:
        found = self._objects.get((rtype, namespace if rtype.namespaced else "", name))
        if found is None:
            raise ApiError(
                404,
                "NotFound",
                f'{rtype.plural}{"." + rtype.group if rtype.group else ""} "{name}" not found',
                {"name": name, "group": rtype.group, "kind": rtype.plural},
            )
        return found

    def _update(
        self, rtype: ResourceType, namespace: str, name: str, new: Obj, *, status_only: bool
    ) -> Obj:
        current = self._current(rtype, namespace, name)
        wanted = str(new.get("metadata", {}).get("resourceVersion") or "")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {rtype.plural}.{rtype.group} "{name}": the '
                "object has been modified; please apply your changes to the latest version "
                "and try again",
                {"name": name, "group": rtype.group, "kind": rtype.plural},
            )
        if status_only:
            updated = copy.deepcopy(current)
            if "status" in new:
                updated["status"] = new["status"]
            else:
                updated.pop("status", None)
        else:
            updated = copy.deepcopy(new)
            updated["apiVersion"], updated["kind"] = rtype.api_version, rtype.kind
            meta = updated.setdefault("metadata", {})
            for fixed in ("uid", "creationTimestamp", "namespace", "name", "generation"):
                if fixed in current["metadata"]:
                    meta[fixed] = current["metadata"][fixed]
            if "deletionTimestamp" in current["metadata"]:
                meta["deletionTimestamp"] = current["metadata"]["deletionTimestamp"]
            if rtype.status_subresource:
                if "status" in current:
                    updated["status"] = current["status"]
                else:
                    updated.pop("status", None)
            if _spec_of(updated) != _spec_of(current):
                meta["generation"] = int(current["metadata"].get("generation", 1)) + 1
        if updated == current:
            return current  # a no-op write does not bump the resourceVersion
        updated["metadata"]["resourceVersion"] = str(self._next_rv())
        meta = updated["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(rtype, updated)
            return updated
        self._objects[(rtype, namespace if rtype.namespaced else "", name)] = updated
        self._record("MODIFIED", rtype, updated)
        return updated

    def _delete(self, rtype: ResourceType, namespace: str, name: str) -> Obj:
        current = self._current(rtype, namespace, name)
        if current["metadata"].get("finalizers"):
            if current["metadata"].get("deletionTimestamp"):
                return current
            updated = copy.deepcopy(current)
            updated["metadata"]["deletionTimestamp"] = _now()
            updated["metadata"]["deletionGracePeriodSeconds"] = 0
            updated["metadata"]["resourceVersion"] = str(self._next_rv())
            self._objects[(rtype, namespace if rtype.namespaced else "", name)] = updated
            self._record("MODIFIED", rtype, updated)
            return updated
        removed = copy.deepcopy(current)
        removed["metadata"]["resourceVersion"] = str(self._next_rv())
        self._remove(rtype, removed)
        return removed

    def _remove(self, rtype: ResourceType, obj: Obj) -> None:
        meta = obj["metadata"]
        self._objects.pop((rtype, meta.get("namespace", ""), meta["name"]), None)
        self._record("DELETED", rtype, obj)
        self._collect_garbage(meta["uid"])

    def _collect_garbage(self, owner_uid: str) -> None:
        dependents = [
            (rtype, ns, name)
            for (rtype, ns, name), obj in self._objects.items()
            if any(
                ref.get("uid") == owner_uid for ref in obj["metadata"].get("ownerReferences", [])
            )
        ]
        for rtype, ns, name in dependents:
            with contextlib.suppress(ApiError):
                self._delete(rtype, ns, name)

    def _list(self, rtype: ResourceType, namespace: str | None, selector: str | None) -> Obj:
        matches = label_matcher(selector)
        items = [
            copy.deepcopy(obj)
            for (t, ns, _), obj in sorted(self._objects.items(), key=lambda kv: kv[0][1:])
            if t is rtype and (namespace is None or ns == namespace) and matches(obj)
        ]
        return {
            "apiVersion": rtype.api_version,
            "kind": f"{rtype.kind}List",
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    # ------------------------------------------------------------------ HTTP
    async def _handle(self, request: Request) -> Response:
        self.requests.append((request.method, request.url.path))
        for index, (code, method) in enumerate(self._failures):
            if method is None or method == request.method:
                del self._failures[index]
                reason = _REASONS.get(code, "InternalError")
                return JSONResponse(status_from(code, reason, "injected failure"), code)
        try:
            return await self._dispatch(request)
        except ApiError as exc:
            return exc.response()

    async def _dispatch(self, request: Request) -> Response:
        params = request.path_params
        group = params.get("group", "")
        version = params["version"]
        parts = [p for p in params["rest"].split("/") if p]
        namespace: str | None = None
        if len(parts) >= 3 and parts[0] == "namespaces":
            namespace, parts = parts[1], parts[2:]
        if not parts:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        rtype = self._types.get((group, version, parts[0]))
        if rtype is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if namespace is not None and not rtype.namespaced:
            raise ApiError(404, "NotFound", f"{rtype.plural} is not namespaced")
        name = parts[1] if len(parts) > 1 else None
        sub = parts[2] if len(parts) > 2 else None
        if sub is not None and (sub != "status" or not rtype.status_subresource):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        ns = namespace or ""
        method = request.method
        query = request.query_params
        if name is None:
            if method == "GET":
                if _flag(query.get("watch")):
                    return self._watch(rtype, namespace, query)
                return JSONResponse(self._list(rtype, namespace, query.get("labelSelector")))
            if method == "POST":
                if rtype.namespaced and namespace is None:
                    raise ApiError(405, "MethodNotAllowed", "create needs a namespace")
                body = await _body(request)
                return JSONResponse(self._create(rtype, ns, body, keep_status=False), 201)
            raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on a collection")
        if method == "GET":
            return JSONResponse(copy.deepcopy(self._current(rtype, ns, name)))
        if method == "PUT":
            body = await _body(request)
            if body.get("metadata", {}).get("name", name) != name:
                raise ApiError(400, "BadRequest", "the name of the object does not match the URL")
            return JSONResponse(
                copy.deepcopy(self._update(rtype, ns, name, body, status_only=sub == "status"))
            )
        if method == "PATCH":
            current = self._current(rtype, ns, name)
            patched = _apply_patch(
                rtype, current, request.headers.get("content-type", ""), await request.body()
            )
            return JSONResponse(
                copy.deepcopy(self._update(rtype, ns, name, patched, status_only=sub == "status"))
            )
        if method == "DELETE":
            return JSONResponse(copy.deepcopy(self._delete(rtype, ns, name)))
        raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed")

    def _watch(self, rtype: ResourceType, namespace: str | None, query: Any) -> Response:
        matches = label_matcher(query.get("labelSelector"))
        since_raw = query.get("resourceVersion")
        bookmarks = _flag(query.get("allowWatchBookmarks"))
        timeout = float(query.get("timeoutSeconds") or 1800)
        watcher = _Watcher(rtype, namespace, matches)
        initial: list[_Event] = []
        expired = False
        if since_raw in (None, "", "0"):
            listed = self._list(rtype, namespace, query.get("labelSelector"))
            initial = [
                _Event(int(o["metadata"]["resourceVersion"]), "ADDED", rtype, o)
                for o in listed["items"]
            ]
        else:
            since = int(since_raw)
            oldest = self._history[0].rv if self._history else self._rv + 1
            if since < oldest - 1 and since < self._rv:
                expired = True
            else:
                initial = [
                    e
                    for e in self._history
                    if e.rv > since
                    and e.rtype is rtype
                    and (namespace is None or e.obj["metadata"].get("namespace", "") == namespace)
                ]
        self._watchers.append(watcher)

        async def stream() -> AsyncIterator[bytes]:
            try:
                if expired:
                    status = status_from(
                        410, "Expired", f"too old resource version: {since_raw} ({self._rv})"
                    )
                    yield _line("ERROR", status)
                    return
                for event in initial:
                    if watcher.matches(event.obj):
                        yield _line(event.type, event.obj)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + timeout
                while (left := deadline - loop.time()) > 0:
                    try:
                        event = await asyncio.wait_for(
                            watcher.queue.get(), min(left, _BOOKMARK_EVERY)
                        )
                    except TimeoutError:
                        if bookmarks:
                            yield _line(
                                "BOOKMARK",
                                {
                                    "apiVersion": rtype.api_version,
                                    "kind": rtype.kind,
                                    "metadata": {"resourceVersion": str(self._rv)},
                                },
                            )
                        continue
                    if watcher.matches(event.obj):
                        yield _line(event.type, event.obj)
            finally:
                with contextlib.suppress(ValueError):
                    self._watchers.remove(watcher)

        return StreamingResponse(stream(), media_type="application/json")


_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_REASONS = {
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    429: "TooManyRequests",
    503: "ServiceUnavailable",
}


def _flag(value: str | None) -> bool:
    """A boolean query parameter, as Go's strconv.ParseBool reads it."""
    return value in ("1", "t", "T", "true", "TRUE", "True")


def _spec_of(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _line(kind: str, obj: Obj) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


async def _body(request: Request) -> Obj:
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "the body is not an object")
    return body


def _apply_patch(rtype: ResourceType, current: Obj, content_type: str, raw: bytes) -> Obj:
    media = content_type.split(";")[0].strip()
    try:
        patch = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"the patch is not JSON: {exc}") from exc
    if media == "application/merge-patch+json":
        merged: Obj = merge_patch(current, patch)
        return merged
    if media == "application/json-patch+json":
        patched: Obj = json_patch(current, patch)
        return patched
    if media == "application/strategic-merge-patch+json" and not rtype.custom:
        merged = merge_patch(current, patch)
        return merged
    raise ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"application/json-patch+json, application/merge-patch+json (got {media!r})",
    )


@contextlib.asynccontextmanager
async def serve(api: FakeKubeApi | None = None) -> AsyncIterator[tuple[FakeKubeApi, str]]:
    """Serve a fake API on a free 127.0.0.1 port in this event loop: (api, base URL)."""
    api = api or FakeKubeApi()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # bound here, so no other process can take the port
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(api.app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="fake-kube-api")
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield api, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
