"""The REST layer: `/api/v1/...` and `/apis/<group>/<version>/...` requests to the store.

Paths: `[namespaces/<ns>/]<plural>[/<name>[/<subresource>]]`. Collections take GET
(list, or watch with `?watch=true`) and POST; objects GET, PUT, PATCH and DELETE; the
`status` subresource reads and writes only `status` (the main path never changes it and
it is dropped on create, as for a CRD with `subresources.status`). Everything refused is
an `ApiError` (see `errors`), answered as a `Status`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from arks_devcluster import apply, events, listing, managed_fields, scale, tables
from arks_devcluster.errors import ApiError, no_resource, not_found
from arks_devcluster.patches import json_patch, merge_patch
from arks_devcluster.resources import ResourceType
from arks_devcluster.selectors import field_matcher, label_matcher
from arks_devcluster.strategic import strategic_merge

if TYPE_CHECKING:
    from arks_devcluster.api import FakeKubeApi

Obj = dict[str, Any]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def flag(value: str | None) -> bool:
    """A boolean query parameter, as Go's strconv.ParseBool reads it."""
    return value in ("1", "t", "T", "true", "TRUE", "True")


PROTOBUF_REFUSED = (
    "the dev cluster reads JSON bodies only, not application/vnd.kubernetes.protobuf "
    "(what kubectl's `create <generator>` commands send): write the object as YAML and "
    "use `kubectl apply -f` or `kubectl create -f`"
)


async def read_body(request: Request) -> Obj:
    if "protobuf" in request.headers.get("content-type", ""):
        raise ApiError(415, "UnsupportedMediaType", PROTOBUF_REFUSED)
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "the body is not an object")
    return body


def apply_patch(rtype: ResourceType, current: Obj, content_type: str, raw: bytes) -> Obj:
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
        merged = strategic_merge(current, patch)
        return merged
    raise ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"application/json-patch+json, application/merge-patch+json (got {media!r})",
    )


def write(
    api: FakeKubeApi,
    rtype: ResourceType,
    ns: str,
    name: str,
    new: Obj,
    *,
    status: bool,
    strict: bool,
    manager: str,
    api_version: str,
    applied: bool = False,
) -> Obj:
    """Update an object (or only its status), admitting the object as it will be stored:
    a status write keeps the stored spec, a main-path write keeps the stored status.
    managedFields: an update is tracked here; an apply (`applied`) brings its own."""
    current = api.store.current(rtype, ns, name)
    candidate = copy.deepcopy(current if status else new)
    if status:
        candidate["metadata"]["resourceVersion"] = new.get("metadata", {}).get("resourceVersion")
        carried = new
    else:
        carried = current if rtype.status_subresource else new
    if "status" in carried:
        candidate["status"] = copy.deepcopy(carried["status"])
    else:
        candidate.pop("status", None)
    if applied:
        candidate["metadata"]["managedFields"] = new["metadata"].get("managedFields", [])
    api.admit(rtype, candidate, current, strict=strict)
    if not applied:
        managed_fields.track_update(
            current, candidate, rtype.schema, manager, api_version, status=status
        )
    return api.store.update(rtype, ns, name, candidate, status_only=status)


class Target:
    """What a resource path names."""

    def __init__(self, api: FakeKubeApi, request: Request) -> None:
        params = request.path_params
        group = params.get("group", "")
        version = params["version"]
        parts = [p for p in params["rest"].split("/") if p]
        self.namespace: str | None = None
        if len(parts) >= 3 and parts[0] == "namespaces":
            self.namespace, parts = parts[1], parts[2:]
        if not parts:
            raise no_resource()
        rtype = api.registry.served(group, version, parts[0])
        if rtype is None:
            raise no_resource()
        if self.namespace is not None and not rtype.namespaced:
            raise no_resource()
        self.view: ResourceType | None = None
        """events.k8s.io/v1 Events: a view of the core ones (see `events`)."""
        if (rtype.group, rtype.plural) == (events.GROUP, "events"):
            self.view, rtype = rtype, api.registry.resource("", "events")
        self.rtype = rtype
        self.version = version
        self.name = parts[1] if len(parts) > 1 else None
        self.sub = parts[2] if len(parts) > 2 else None
        if len(parts) > 3 or (self.sub is not None and not self._serves(self.sub)):
            raise no_resource()

    def _serves(self, sub: str) -> bool:
        if sub == "scale":
            return self.rtype.scale is not None
        if sub in self.rtype.subresources:
            return True
        return sub == "status" and self.rtype.status_subresource

    @property
    def api_version(self) -> str:
        group = (self.view or self.rtype).group
        return f"{group}/{self.version}" if group else self.version

    @property
    def ns(self) -> str:
        return self.namespace or ""


async def _scale(api: FakeKubeApi, request: Request, target: Target) -> Response:
    rtype, ns, name = target.rtype, target.ns, target.name or ""
    current = api.store.current(rtype, ns, name)
    view = scale.scale_of(rtype, current)
    if request.method == "GET":
        return JSONResponse(view)
    if request.method == "PUT":
        wanted = await read_body(request)
    elif request.method == "PATCH":
        content_type = request.headers.get("content-type", "")
        wanted = apply_patch(rtype, view, content_type, await request.body())
    else:
        raise ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed on scale")
    updated = scale.scaled(rtype, current, wanted)
    manager = managed_fields.manager_of(request)
    written = write(
        api,
        rtype,
        ns,
        name,
        updated,
        status=False,
        strict=False,
        manager=manager,
        api_version=rtype.api_version,
    )
    return JSONResponse(scale.scale_of(rtype, written))


async def delete_options(request: Request) -> Obj:
    """DeleteOptions from the body (if any) and the query (which wins, as upstream)."""
    raw = await request.body()
    options: Obj = {}
    if raw.strip():
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"the body is not JSON: {exc}") from exc
        if isinstance(parsed, dict):
            options = parsed
    policy = request.query_params.get("propagationPolicy")
    if policy:
        options["propagationPolicy"] = policy
    return options


def _matcher(request: Request, rtype: ResourceType) -> Callable[[Obj], bool]:
    query = request.query_params
    labels = label_matcher(query.get("labelSelector"))
    describe = f"{rtype.api_version}, Resource={rtype.plural}"
    selector = events.core_field_selector(query.get("fieldSelector"))
    fields = field_matcher(selector, rtype.group, rtype.plural, describe)
    return lambda obj: labels(obj) and fields(obj)


def _list(api: FakeKubeApi, request: Request, target: Target) -> Response:
    query = request.query_params
    rtype = target.rtype
    matches = _matcher(request, rtype)
    if flag(query.get("watch")):
        return api.watches.response(
            rtype,
            target.namespace,
            matches,
            query.get("resourceVersion"),
            bookmarks=flag(query.get("allowWatchBookmarks")),
            timeout=float(query.get("timeoutSeconds") or 1800),
            present=lambda obj: in_version(obj, target),
        )
    try:
        limit = int(query.get("limit") or 0)
    except ValueError as exc:
        raise ApiError(400, "BadRequest", "limit must be an integer") from exc
    items, meta = listing.page(
        api.store, rtype, target.namespace, matches, limit, query.get("continue")
    )
    items = [in_version(o, target) for o in items]
    if tables.wants_table(request.headers.get("accept", "")):
        table = tables.table(rtype, items, meta["resourceVersion"])
        table["metadata"] = meta
        return JSONResponse(table)
    return JSONResponse(
        {
            "apiVersion": target.api_version,
            "kind": rtype.list_kind,
            "metadata": meta,
            "items": items,
        }
    )


async def _apply(
    api: FakeKubeApi, request: Request, target: Target, manager: str, strict: bool
) -> Response:
    """Server-side apply (see `apply`): update, or create when the object is missing."""
    rtype, ns, name = target.rtype, target.ns, target.name or ""
    if not request.query_params.get("fieldManager"):
        raise ApiError(
            422,
            "Invalid",
            'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is '
            "required for apply patch",
        )
    configuration = _stored(apply.parse(await request.body()), target)
    if (configuration.get("metadata") or {}).get("name", name) != name:
        raise ApiError(400, "BadRequest", "the name of the object does not match the URL")
    force = flag(request.query_params.get("force"))
    status = target.sub == "status"
    current = api.store.find(rtype, ns, name)
    merged = apply.apply(
        current,
        configuration,
        rtype.schema,
        manager,
        target.api_version,
        force=force,
        status=status,
    )
    if current is None:
        if status:
            raise not_found(rtype.group, rtype.plural, name)
        merged.setdefault("metadata", {})["name"] = name
        api.admit(rtype, merged, None, strict=strict)
        created = api.store.create(rtype, ns, merged, keep_status=False)
        return JSONResponse(in_version(created, target), 201)
    written = write(
        api,
        rtype,
        ns,
        name,
        merged,
        status=status,
        strict=strict,
        manager=manager,
        api_version=target.api_version,
        applied=True,
    )
    return JSONResponse(in_version(written, target))


def _token_request(api: FakeKubeApi, request: Request, target: Target) -> Response:
    """TokenRequest: a bearer token for an existing ServiceAccount. The request's body is
    not read: kubectl sends it as protobuf, and every token here is the same kind (no
    audiences, no expiry enforced)."""
    if request.method != "POST":
        raise ApiError(405, "MethodNotAllowed", "a token is only created")
    account = api.store.current(target.rtype, target.ns, target.name or "")
    token = api.token_for(target.ns, account["metadata"]["name"])
    return JSONResponse(
        {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": account["metadata"]["name"], "namespace": target.ns},
            "spec": {"audiences": [], "expirationSeconds": 3600},
            "status": {"token": token, "expirationTimestamp": "2099-01-01T00:00:00Z"},
        },
        201,
    )


def _stored(obj: Obj, target: Target) -> Obj:
    """A body written through a view, in the stored shape."""
    return events.to_core(obj) if target.view is not None else obj


def in_version(obj: Obj, target: Target) -> Obj:
    """An object as read through the version of the request's path (the `None`
    conversion: only apiVersion differs between versions)."""
    rtype = target.rtype
    if target.view is not None:
        return events.from_core(obj)
    if target.version == rtype.version or obj.get("kind") != rtype.kind:
        return obj
    group = f"{rtype.group}/" if rtype.group else ""
    return {**obj, "apiVersion": f"{group}{target.version}"}


async def handle(api: FakeKubeApi, request: Request) -> Response:
    target = Target(api, request)
    rtype, name, ns, sub = target.rtype, target.name, target.ns, target.sub
    method = request.method
    query = request.query_params
    store = api.store
    strict = query.get("fieldValidation") == "Strict"
    manager = managed_fields.manager_of(request)
    options: Any = {
        "status": sub == "status",
        "strict": strict,
        "manager": manager,
        "api_version": target.api_version,
    }
    if name is None:
        if method == "GET":
            return _list(api, request, target)
        if method == "POST":
            if rtype.namespaced and target.namespace is None:
                raise ApiError(405, "MethodNotAllowed", "create needs a namespace")
            body = _stored(await read_body(request), target)
            api.admit(rtype, body, None, strict=strict)
            managed_fields.track_update(
                None, body, rtype.schema, manager, target.api_version, status=False
            )
            created = store.create(rtype, ns, body, keep_status=False)
            return JSONResponse(in_version(created, target), 201)
        if method == "DELETE":
            options = await delete_options(request)
            matches = _matcher(request, rtype)
            gone = []
            for obj in [o for o in store.items(rtype, target.namespace) if matches(o)]:
                meta = obj["metadata"]
                deleted = api.collector.delete(
                    rtype, meta.get("namespace", ""), meta["name"], options
                )
                gone.append(in_version(deleted, target))
            return JSONResponse(
                {
                    "apiVersion": target.api_version,
                    "kind": rtype.list_kind,
                    "metadata": {"resourceVersion": str(store.rv)},
                    "items": gone,
                }
            )
        raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on a collection")
    if sub == "scale":
        return await _scale(api, request, target)
    if sub == "token":
        return _token_request(api, request, target)
    if method == "GET":
        found = store.current(rtype, ns, name)
        if sub is None and tables.wants_table(request.headers.get("accept", "")):
            return JSONResponse(tables.table(rtype, [found], str(store.rv)))
        return JSONResponse(in_version(found, target))
    if method == "PUT":
        body = _stored(await read_body(request), target)
        if body.get("metadata", {}).get("name", name) != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the URL")
        written = write(api, rtype, ns, name, body, **options)
        return JSONResponse(in_version(written, target))
    if method == "PATCH":
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip() == apply.MEDIA:
            return await _apply(api, request, target, manager, strict)
        current = in_version(store.current(rtype, ns, name), target)
        patched = _stored(apply_patch(rtype, current, content_type, await request.body()), target)
        written = write(api, rtype, ns, name, patched, **options)
        return JSONResponse(in_version(written, target))
    if method == "DELETE":
        options = await delete_options(request)
        deleted = api.collector.delete(rtype, ns, name, options)
        return JSONResponse(in_version(deleted, target))
    raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed")
