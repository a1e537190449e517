"""The request handlers of the subresources and of server-side apply: `/scale` (see
`scale`), a ServiceAccount's `/token` (TokenRequest, see `auth`), and `PATCH` with
`application/apply-patch+yaml` (see `apply`), which creates the object when it is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from arks_devcluster import apply, managed_fields, scale
from arks_devcluster.bodies import apply_patch, flag, read_body
from arks_devcluster.errors import ApiError, not_found
from arks_devcluster.targets import Target, in_version, stored
from arks_devcluster.writes import write

if TYPE_CHECKING:
    from arks_devcluster.api import FakeKubeApi

Obj = dict[str, Any]


async def scale_request(api: FakeKubeApi, request: Request, target: Target) -> Response:
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


async def apply_request(
    api: FakeKubeApi,
    request: Request,
    target: Target,
    manager: str,
    strict: bool,
    *,
    dry_run: bool = False,
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
    configuration = stored(apply.parse(await request.body()), target)
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
        created = api.store.create(rtype, ns, merged, keep_status=False, dry_run=dry_run)
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
        dry_run=dry_run,
    )
    return JSONResponse(in_version(written, target))


def token_request(api: FakeKubeApi, request: Request, target: Target) -> Response:
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
