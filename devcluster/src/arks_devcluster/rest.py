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
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from arks_devcluster import apply, managed_fields, scale, tables
from arks_devcluster.errors import ApiError, no_resource, not_found
from arks_devcluster.patches import json_patch, merge_patch
from arks_devcluster.resources import ResourceType
from arks_devcluster.selectors import label_matcher
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
        self.rtype = rtype
        self.version = version
        self.name = parts[1] if len(parts) > 1 else None
        self.sub = parts[2] if len(parts) > 2 else None
        if len(parts) > 3 or (self.sub is not None and not self._serves(self.sub)):
            raise no_resource()

    def _serves(self, sub: str) -> bool:
        if sub == "scale":
            return self.rtype.scale is not None
        return sub == "status" and self.rtype.status_subresource

    @property
    def api_version(self) -> str:
        group = self.rtype.group
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
    configuration = apply.parse(await request.body())
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


def in_version(obj: Obj, target: Target) -> Obj:
    """An object as read through the version of the request's path (the `None`
    conversion: only apiVersion differs between versions)."""
    rtype = target.rtype
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
            matches = label_matcher(query.get("labelSelector"))
            if flag(query.get("watch")):
                return api.watches.response(
                    rtype,
                    target.namespace,
                    matches,
                    query.get("resourceVersion"),
                    bookmarks=flag(query.get("allowWatchBookmarks")),
                    timeout=float(query.get("timeoutSeconds") or 1800),
                )
            items = [
                in_version(o, target) for o in store.items(rtype, target.namespace) if matches(o)
            ]
            if tables.wants_table(request.headers.get("accept", "")):
                return JSONResponse(tables.table(rtype, items, str(store.rv)))
            return JSONResponse(
                {
                    "apiVersion": in_version(
                        {"apiVersion": rtype.api_version, "kind": rtype.kind}, target
                    )["apiVersion"],
                    "kind": rtype.list_kind,
                    "metadata": {"resourceVersion": str(store.rv)},
                    "items": items,
                }
            )
        if method == "POST":
            if rtype.namespaced and target.namespace is None:
                raise ApiError(405, "MethodNotAllowed", "create needs a namespace")
            body = await read_body(request)
            api.admit(rtype, body, None, strict=strict)
            managed_fields.track_update(
                None, body, rtype.schema, manager, target.api_version, status=False
            )
            created = store.create(rtype, ns, body, keep_status=False)
            return JSONResponse(in_version(created, target), 201)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on a collection")
    if sub == "scale":
        return await _scale(api, request, target)
    if method == "GET":
        found = store.current(rtype, ns, name)
        if sub is None and tables.wants_table(request.headers.get("accept", "")):
            return JSONResponse(tables.table(rtype, [found], str(store.rv)))
        return JSONResponse(in_version(found, target))
    if method == "PUT":
        body = await read_body(request)
        if body.get("metadata", {}).get("name", name) != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the URL")
        written = write(api, rtype, ns, name, body, **options)
        return JSONResponse(in_version(written, target))
    if method == "PATCH":
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip() == apply.MEDIA:
            return await _apply(api, request, target, manager, strict)
        current = store.current(rtype, ns, name)
        patched = apply_patch(rtype, current, content_type, await request.body())
        written = write(api, rtype, ns, name, patched, **options)
        return JSONResponse(in_version(written, target))
    if method == "DELETE":
        return JSONResponse(in_version(store.delete(rtype, ns, name), target))
    raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed")
