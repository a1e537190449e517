"""The REST layer: `/api/v1/...` and `/apis/<group>/<version>/...` requests to the store.

Paths: `[namespaces/<ns>/]<plural>[/<name>[/<subresource>]]`. Collections take GET
(list, or watch with `?watch=true`) and POST; objects GET, PUT, PATCH and DELETE; the
`status` subresource reads and writes only `status` (the main path never changes it and
it is dropped on create, as for a CRD with `subresources.status`). Everything refused is
an `ApiError` (see `errors`), answered as a `Status`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from arks_devcluster import events, listing, managed_fields, tables
from arks_devcluster.apply import MEDIA as APPLY_MEDIA
from arks_devcluster.bodies import apply_patch, delete_options, dry_run, flag, read_body
from arks_devcluster.errors import ApiError
from arks_devcluster.kubelet.logs import pod_log_request
from arks_devcluster.resources import ResourceType
from arks_devcluster.selectors import field_matcher, label_matcher
from arks_devcluster.subresources import apply_request, scale_request, token_request
from arks_devcluster.targets import Target, in_version, stored
from arks_devcluster.writes import write

if TYPE_CHECKING:
    from arks_devcluster.api import FakeKubeApi

Obj = dict[str, Any]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


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


async def handle(api: FakeKubeApi, request: Request) -> Response:
    target = Target(api, request)
    rtype, name, ns, sub = target.rtype, target.name, target.ns, target.sub
    method = request.method
    query = request.query_params
    store = api.store
    strict = query.get("fieldValidation") == "Strict"
    manager = managed_fields.manager_of(request)
    dry = dry_run(request)
    options: Any = {
        "status": sub == "status",
        "strict": strict,
        "manager": manager,
        "api_version": target.api_version,
        "dry_run": dry,
    }
    if name is None:
        if method == "GET":
            return _list(api, request, target)
        if method == "POST":
            if rtype.namespaced and target.namespace is None:
                raise ApiError(405, "MethodNotAllowed", "create needs a namespace")
            body = stored(await read_body(request), target)
            api.admit(rtype, body, None, strict=strict)
            managed_fields.track_update(
                None, body, rtype.schema, manager, target.api_version, status=False
            )
            created = store.create(rtype, ns, body, keep_status=False, dry_run=dry)
            return JSONResponse(in_version(created, target), 201)
        if method == "DELETE":
            options = await delete_options(request)
            dry = dry or options.get("dryRun") == ["All"]
            matches = _matcher(request, rtype)
            gone = []
            for obj in [o for o in store.items(rtype, target.namespace) if matches(o)]:
                meta = obj["metadata"]
                deleted = api.collector.delete(
                    rtype, meta.get("namespace", ""), meta["name"], options, dry_run=dry
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
        return await scale_request(api, request, target)
    if sub == "token":
        return token_request(api, request, target)
    if sub == "log":
        return await pod_log_request(api, request, target)
    if method == "GET":
        found = store.current(rtype, ns, name)
        if sub is None and tables.wants_table(request.headers.get("accept", "")):
            return JSONResponse(tables.table(rtype, [found], str(store.rv)))
        return JSONResponse(in_version(found, target))
    if method == "PUT":
        body = stored(await read_body(request), target)
        if body.get("metadata", {}).get("name", name) != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the URL")
        written = write(api, rtype, ns, name, body, **options)
        return JSONResponse(in_version(written, target))
    if method == "PATCH":
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip() == APPLY_MEDIA:
            return await apply_request(api, request, target, manager, strict, dry_run=dry)
        current = in_version(store.current(rtype, ns, name), target)
        patched = stored(apply_patch(rtype, current, content_type, await request.body()), target)
        written = write(api, rtype, ns, name, patched, **options)
        return JSONResponse(in_version(written, target))
    if method == "DELETE":
        options = await delete_options(request)
        dry = dry or options.get("dryRun") == ["All"]  # DeleteOptions may carry it too
        deleted = api.collector.delete(rtype, ns, name, options, dry_run=dry)
        return JSONResponse(in_version(deleted, target))
    raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed")
