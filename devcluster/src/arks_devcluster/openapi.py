"""OpenAPI v3 documents, as much of them as kubectl needs.

kubectl 1.32 reads `/openapi/v3` before `apply` (and `create -f`, `replace`): it checks
that the server supports server-side field validation (the `fieldValidation` query
parameter on the resource's operations), and fails with "failed to download openapi"
when the document is missing. `kubectl explain` reads the schemas from it.

So every group-version gets a document (`/openapi/v3/api/v1`, `/openapi/v3/apis/<g>/<v>`)
with one path per resource operation, each with the `x-kubernetes-group-version-kind`
and `x-kubernetes-action` extensions and the `fieldValidation`, `fieldManager` and
`dryRun` parameters, and one component schema per kind: the CRD's structural schema for
custom resources, a generic object (apiVersion, kind, metadata) for built-in kinds —
`kubectl explain` of a built-in kind shows no fields here, which is the one place this
differs from a real server.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from arks_devcluster.registry import Registry
from arks_devcluster.resources import ResourceType

Obj = dict[str, Any]
_WRITE_PARAMS = ["dryRun", "fieldManager", "fieldValidation"]


def _param(name: str) -> Obj:
    return {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}


def schema_name(rtype: ResourceType, version: str) -> str:
    """`io.k8s.api.apps.v1.Deployment` for built-ins; reversed group for custom ones."""
    if not rtype.custom:
        group = (rtype.group or "core").split(".")[0]
        return f"io.k8s.api.{group}.{version}.{rtype.kind}"
    reversed_group = ".".join(reversed(rtype.group.split(".")))
    return f"{reversed_group}.{version}.{rtype.kind}"


def _gvk(rtype: ResourceType, version: str) -> Obj:
    return {"group": rtype.group, "version": version, "kind": rtype.kind}


def _operation(rtype: ResourceType, version: str, action: str, params: list[str]) -> Obj:
    ref = {"$ref": f"#/components/schemas/{schema_name(rtype, version)}"}
    return {
        "operationId": f"{action}{rtype.kind}",
        "parameters": [_param(p) for p in params],
        "responses": {"200": {"content": {"application/json": {"schema": ref}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(rtype, version),
    }


def _schema(rtype: ResourceType, version: str) -> Obj:
    schema: Obj = dict(rtype.schema) if rtype.schema else {"type": "object"}
    properties = dict(schema.get("properties") or {})
    properties.setdefault("apiVersion", {"type": "string"})
    properties.setdefault("kind", {"type": "string"})
    properties["metadata"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    schema["properties"] = properties
    if not rtype.schema:
        schema["x-kubernetes-preserve-unknown-fields"] = True
    schema["x-kubernetes-group-version-kind"] = [_gvk(rtype, version)]
    return schema


def group_version_document(registry: Registry, group: str, version: str) -> Obj | None:
    rtypes = [r for r in registry if r.group == group and version in r.all_versions]
    if not rtypes:
        return None
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    paths: Obj = {}
    schemas: Obj = {}
    for rtype in rtypes:
        scope = f"{prefix}/namespaces/{{namespace}}" if rtype.namespaced else prefix
        collection = f"{scope}/{rtype.plural}"
        paths[collection] = {
            "get": _operation(rtype, version, "list", []),
            "post": _operation(rtype, version, "post", _WRITE_PARAMS),
        }
        item = {
            "get": _operation(rtype, version, "get", []),
            "put": _operation(rtype, version, "put", _WRITE_PARAMS),
            "patch": _operation(rtype, version, "patch", [*_WRITE_PARAMS, "force"]),
            "delete": _operation(rtype, version, "delete", ["dryRun"]),
        }
        paths[f"{collection}/{{name}}"] = item
        if rtype.status_subresource:
            paths[f"{collection}/{{name}}/status"] = {
                k: v for k, v in item.items() if k != "delete"
            }
        schemas[schema_name(rtype, version)] = _schema(rtype, version)
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def root(registry: Registry) -> Obj:
    """`/openapi/v3`: one entry per group-version, with a hash of its document (clients
    cache documents by URL, so the hash changes when a CRD changes the document)."""
    paths: Obj = {}
    for group, versions in registry.group_versions().items():
        for version in versions:
            doc = group_version_document(registry, group, version)
            digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]
            key = f"apis/{group}/{version}" if group else f"api/{version}"
            paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
    return {"paths": paths}
