"""The HTTPRoute of an ArksEndpoint (and the ReferenceGrant it may need).

With `spec.gatewayRef` set, HTTPRoute `<endpoint>` (gateway.networking.k8s.io/v1, in the
endpoint's namespace) attaches to that Gateway with one rule: each `matchConfigs` entry
plus the header matches `model: <endpoint>` and `namespace: <namespace>` (one match
holding only those when there are no matchConfigs), and ONE backendRef, the Arks router's
Service, which picks the application per request. Upstream listed the applications'
Services as backends and rendered a rule without backends when none was ready (Envoy
answered 500, §6.5.15 / issue #56); a rule here always has its backend. The route is
owned by the endpoint (upstream relied on a finalizer alone).

When the router's Service lives in another namespace, Gateway API requires a
ReferenceGrant (v1beta1) in that namespace allowing HTTPRoutes of the endpoint's
namespace to reference it. Owner references cannot cross namespaces, so the grant is
named after the endpoint (`arks-endpoint-<namespace>-<name>`, hashed when long) and
labelled `arks.ai/endpoint` / `arks.ai/endpoint-namespace` for the platform to delete.
"""

from __future__ import annotations

import hashlib
from typing import Final

from arks_common import resources
from arks_reconciler.kube import objects
from arks_reconciler.kube.objects import Obj
from arks_reconciler.kube.render import meta

GATEWAY_GROUP: Final = "gateway.networking.k8s.io"
MODEL_HEADER: Final = "model"
NAMESPACE_HEADER: Final = "namespace"


def _ours(endpoint: resources.ArksEndpoint) -> list[Obj]:
    return [
        {"type": "Exact", "name": MODEL_HEADER, "value": endpoint.name},
        {"type": "Exact", "name": NAMESPACE_HEADER, "value": endpoint.namespace},
    ]


def _matches(endpoint: resources.ArksEndpoint) -> list[Obj]:
    """Each matchConfig with Arks' header matches (a user match on `model` or `namespace`
    would contradict them, so it is replaced)."""
    reserved = {MODEL_HEADER, NAMESPACE_HEADER}
    matches: list[Obj] = []
    for match in endpoint.spec.match_configs:
        dumped = match.model_dump(by_alias=True, exclude_none=True, mode="json")
        headers = [h for h in dumped.get("headers") or [] if h["name"].lower() not in reserved]
        dumped["headers"] = headers + _ours(endpoint)
        matches.append(dumped)
    return matches or [{"headers": _ours(endpoint)}]


def grant_name(endpoint: resources.ArksEndpoint) -> str:
    """The ReferenceGrant's name of `endpoint` (see `grant_name_of`)."""
    return grant_name_of(endpoint.namespace, endpoint.name)


def grant_name_of(namespace: str, endpoint: str) -> str:
    """The ReferenceGrant's name: `arks-endpoint-<namespace>-<name>` (<= 253 characters)."""
    name = f"arks-endpoint-{namespace}-{endpoint}"
    if len(name) <= objects.MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{name[: objects.MAX_NAME - 13].rstrip('-.')}-{digest}"


def reference_grant(endpoint: resources.ArksEndpoint, namespace: str, service: str) -> Obj:
    """Allows the endpoint's HTTPRoutes to reference Service `service` in `namespace`."""
    out = meta.obj(
        f"{GATEWAY_GROUP}/v1beta1",
        "ReferenceGrant",
        grant_name(endpoint),
        namespace,
        labels={},
        owner=None,
    )
    out["spec"] = {
        "from": [{"group": GATEWAY_GROUP, "kind": "HTTPRoute", "namespace": endpoint.namespace}],
        "to": [{"group": "", "kind": "Service", "name": service}],
    }
    return out


def http_route(
    endpoint: resources.ArksEndpoint, *, router_service: tuple[str, str, int], uid: str
) -> list[Obj]:
    """The HTTPRoute (and ReferenceGrant) of `endpoint`; [] without `gatewayRef`.

    `router_service` is the router Service's (namespace, name, port)."""
    parent = endpoint.spec.gateway_ref
    if parent is None:
        return []
    namespace, name, port = router_service
    backend: Obj = {"group": "", "kind": "Service", "name": name, "port": port}
    if namespace != endpoint.namespace:
        backend["namespace"] = namespace
    route = meta.obj(
        f"{GATEWAY_GROUP}/v1",
        "HTTPRoute",
        endpoint.name,
        endpoint.namespace,
        labels={},
        owner=objects.owner_reference(endpoint.kind, endpoint.name, uid),
    )
    route["spec"] = {
        "parentRefs": [parent.model_dump(by_alias=True, exclude_none=True, mode="json")],
        "rules": [{"matches": _matches(endpoint), "backendRefs": [backend]}],
    }
    if namespace == endpoint.namespace:
        return [route]
    return [route, reference_grant(endpoint, namespace, name)]
