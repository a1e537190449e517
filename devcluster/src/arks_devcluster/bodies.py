"""Request bodies and query options: JSON and protobuf bodies, patches by content type,
DeleteOptions.

Bodies are JSON, or protobuf (`application/vnd.kubernetes.protobuf`, what kubectl's
`create <generator>` commands send) for the built-in kinds `protobuf` decodes: a malformed
protobuf body is 400, another kind 415 with what to do instead. A patch's content type
picks JSON merge patch, JSON patch or (built-in kinds only) strategic merge patch;
anything else is 415. Server-side apply has its own path (`subresources.apply_request`).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from arks_devcluster import protobuf
from arks_devcluster.errors import ApiError
from arks_devcluster.patches import json_patch, merge_patch
from arks_devcluster.resources import ResourceType
from arks_devcluster.strategic import strategic_merge

Obj = dict[str, Any]


def flag(value: str | None) -> bool:
    """A boolean query parameter, as Go's strconv.ParseBool reads it."""
    return value in ("1", "t", "T", "true", "TRUE", "True")


PROTOBUF_REFUSED = (
    "the dev cluster decodes application/vnd.kubernetes.protobuf bodies of {decoded} only, "
    "not of {kind}: write the object as YAML and use `kubectl apply -f` or `kubectl create -f`"
)


async def read_body(request: Request) -> Obj:
    if "protobuf" in request.headers.get("content-type", ""):
        return _protobuf_body(await request.body())
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "the body is not an object")
    return body


def _protobuf_body(raw: bytes) -> Obj:
    try:
        return protobuf.decode(raw)
    except protobuf.UnknownKind as exc:
        decoded = ", ".join(protobuf.decoded_kinds())
        message = PROTOBUF_REFUSED.format(decoded=decoded, kind=exc)
        raise ApiError(415, "UnsupportedMediaType", message) from exc
    except protobuf.ProtobufError as exc:
        raise ApiError(400, "BadRequest", f"the protobuf body cannot be decoded: {exc}") from exc


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


def dry_run(request: Request) -> bool:
    """`dryRun=All`: the write is checked and answered but not stored (400 for others)."""
    values = request.query_params.getlist("dryRun")
    for value in values:
        if value != "All":
            raise ApiError(
                400, "BadRequest", f'Invalid dry run value: "{value}": supported values: "All"'
            )
    return bool(values)


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
