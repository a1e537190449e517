"""Discovery: what kubectl and client libraries ask before anything else.

- `/version`: a 1.32 server (kubectl warns about skew beyond one minor version);
- `/api` and `/apis`, in two forms chosen by the Accept header: the aggregated discovery
  document (`APIGroupDiscoveryList`, apidiscovery.k8s.io/v2 or v2beta1), which kubectl
  1.32 asks for first and which describes every resource in one response; else the
  legacy `APIVersions` / `APIGroupList`;
- `/api/v1`, `/apis/<group>/<version>`: the legacy `APIResourceList` (kubernetes-asyncio's
  dynamic client reads these), subresources listed as `<plural>/<sub>`;
- `/apis/<group>`: the `APIGroup`.

Everything is computed from the registry at request time, so a CRD's kind appears as soon
as it is created and disappears when it is deleted (clients cache discovery: kubectl for
a few minutes unless told otherwise, which is why the server sets no cache headers).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from arks_devcluster.errors import no_resource
from arks_devcluster.registry import Registry
from arks_devcluster.resources import ResourceType

Obj = dict[str, Any]
VERSION_INFO = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0+arks-devcluster",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_STATUS_VERBS = ["get", "patch", "update"]


def _aggregated_version(accept: str) -> str | None:
    """The apidiscovery version the client accepts (v2 preferred), or None."""
    for wanted in ("v2", "v2beta1"):
        for part in accept.split(","):
            params = {p.strip() for p in part.split(";")}
            if "g=apidiscovery.k8s.io" in params and f"v={wanted}" in params:
                return wanted
    return None


def _subresources(rtype: ResourceType) -> list[tuple[str, str, str, str, list[str]]]:
    """(name, group, version, kind, verbs) of each subresource."""
    out = []
    if rtype.status_subresource:
        out.append(("status", rtype.group, rtype.version, rtype.kind, _STATUS_VERBS))
    if rtype.scale is not None:
        out.append(("scale", "autoscaling", "v1", "Scale", _STATUS_VERBS))
    if "token" in rtype.subresources:
        out.append(("token", "authentication.k8s.io", "v1", "TokenRequest", ["create"]))
    if "log" in rtype.subresources:
        out.append(("log", "", "v1", "Pod", ["get"]))
    return out


def _aggregated_resource(rtype: ResourceType, version: str) -> Obj:
    resource: Obj = {
        "resource": rtype.plural,
        "responseKind": {"group": rtype.group, "version": version, "kind": rtype.kind},
        "scope": "Namespaced" if rtype.namespaced else "Cluster",
        "singularResource": rtype.singular_name,
        "verbs": list(rtype.verbs),
    }
    if rtype.short_names:
        resource["shortNames"] = list(rtype.short_names)
    if rtype.categories:
        resource["categories"] = list(rtype.categories)
    subs = [
        {
            "subresource": name,
            "responseKind": {"group": group, "version": sub_version, "kind": kind},
            "verbs": verbs,
        }
        for name, group, sub_version, kind, verbs in _subresources(rtype)
    ]
    if subs:
        resource["subresources"] = subs
    return resource


def _aggregated(registry: Registry, legacy: bool, version: str) -> Obj:
    items = []
    for group, versions in sorted(registry.group_versions().items()):
        if (group == "") != legacy:
            continue
        items.append(
            {
                "metadata": {"name": group, "creationTimestamp": None},
                "versions": [
                    {
                        "version": v,
                        "resources": [
                            _aggregated_resource(r, v)
                            for r in sorted(registry, key=lambda r: r.plural)
                            if r.group == group and v in r.all_versions
                        ],
                        "freshness": "Current",
                    }
                    for v in versions
                ],
            }
        )
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{version}",
        "metadata": {},
        "items": items,
    }


def _group(group: str, versions: list[str]) -> Obj:
    listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": listed, "preferredVersion": listed[0]}


def resource_list(registry: Registry, group: str, version: str) -> Obj | None:
    rtypes = [r for r in registry if r.group == group and version in r.all_versions]
    if not rtypes:
        return None
    resources: list[Obj] = []
    for rtype in sorted(rtypes, key=lambda r: r.plural):
        entry: Obj = {
            "name": rtype.plural,
            "singularName": rtype.singular_name,
            "namespaced": rtype.namespaced,
            "kind": rtype.kind,
            "verbs": list(rtype.verbs),
        }
        if rtype.short_names:
            entry["shortNames"] = list(rtype.short_names)
        if rtype.categories:
            entry["categories"] = list(rtype.categories)
        resources.append(entry)
        for name, sub_group, sub_version, kind, verbs in _subresources(rtype):
            sub: Obj = {
                "name": f"{rtype.plural}/{name}",
                "singularName": "",
                "namespaced": rtype.namespaced,
                "kind": kind,
                "verbs": verbs,
            }
            if sub_group != group:
                sub.update(group=sub_group, version=sub_version)
            resources.append(sub)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def _aggregated_response(doc: Obj, version: str) -> Response:
    media = f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
    return JSONResponse(doc, headers={"Content-Type": media})


async def version(_: Request) -> Response:
    return JSONResponse(VERSION_INFO)


def core(registry: Registry, request: Request) -> Response:
    wanted = _aggregated_version(request.headers.get("accept", ""))
    if wanted is not None:
        return _aggregated_response(_aggregated(registry, True, wanted), wanted)
    host = request.url.netloc
    return JSONResponse(
        {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
        }
    )


def groups(registry: Registry, request: Request) -> Response:
    wanted = _aggregated_version(request.headers.get("accept", ""))
    if wanted is not None:
        return _aggregated_response(_aggregated(registry, False, wanted), wanted)
    listed = [_group(g, v) for g, v in sorted(registry.group_versions().items()) if g]
    return JSONResponse({"kind": "APIGroupList", "apiVersion": "v1", "groups": listed})


def group(registry: Registry, name: str) -> Response:
    versions = registry.group_versions().get(name)
    if not name or not versions:
        raise no_resource()
    return JSONResponse({"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)})


def resources(registry: Registry, group: str, version: str) -> Response:
    doc = resource_list(registry, group, version)
    if doc is None:
        raise no_resource()
    return JSONResponse(doc)
