"""The API kinds the Kubernetes platform reads and writes, and their REST paths.

A `KindInfo` names a kind's group, version and plural; `path()` builds the request path
of a collection, an object or a subresource, for one namespace or all of them. `ARKS`
are the six arks.ai kinds (watched in full); `OWNED` are the kinds the platform creates
(watched with the managed-by selector); `DRIVERS` maps `spec.driver` values to the kind
they render, whose CRD may be missing from a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from arks_common import resources


@dataclass(frozen=True)
class KindInfo:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, namespace: str | None = None, name: str | None = None, sub: str | None = None
    ) -> str:
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        parts = [root]
        if namespace is not None and self.namespaced:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name is not None:
            parts.append(name)
            if sub is not None:
                parts.append(sub)
        return "/".join(parts)


ARKS: Final = {
    kind: KindInfo(resources.GROUP, resources.VERSION, plural, kind)
    for kind, plural in resources.PLURALS.items()
}
DEPLOYMENT: Final = KindInfo("apps", "v1", "deployments", "Deployment")
LWS: Final = KindInfo("leaderworkerset.x-k8s.io", "v1", "leaderworkersets", "LeaderWorkerSet")
RBG: Final = KindInfo("workloads.x-k8s.io", "v1alpha1", "rolebasedgroups", "RoleBasedGroup")
RBGS: Final = KindInfo("workloads.x-k8s.io", "v1alpha1", "rolebasedgroupsets", "RoleBasedGroupSet")
"""Upstream Arks' workload (never written by us: watched to be replaced, then deleted)."""
SERVICE: Final = KindInfo("", "v1", "services", "Service")
POD: Final = KindInfo("", "v1", "pods", "Pod")
PVC: Final = KindInfo("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim")
JOB: Final = KindInfo("batch", "v1", "jobs", "Job")
SERVICE_ACCOUNT: Final = KindInfo("", "v1", "serviceaccounts", "ServiceAccount")
ROLE: Final = KindInfo("rbac.authorization.k8s.io", "v1", "roles", "Role")
ROLE_BINDING: Final = KindInfo("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")
HTTP_ROUTE: Final = KindInfo("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute")
REFERENCE_GRANT: Final = KindInfo(
    "gateway.networking.k8s.io", "v1beta1", "referencegrants", "ReferenceGrant"
)
CRD: Final = KindInfo(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False
)

OWNED: Final = (
    DEPLOYMENT,
    LWS,
    RBG,
    RBGS,
    SERVICE,
    POD,
    PVC,
    JOB,
    SERVICE_ACCOUNT,
    ROLE,
    ROLE_BINDING,
    HTTP_ROUTE,
    REFERENCE_GRANT,
)
DRIVERS: Final = {"lws": LWS, "rbg": RBG, "deployment": DEPLOYMENT}
OPTIONAL: Final = frozenset({LWS, RBG, RBGS, HTTP_ROUTE, REFERENCE_GRANT})
"""Kinds of CRDs a cluster may lack (their informers wait for the CRD)."""

BY_API: Final = {(k.api_version, k.kind): k for k in (*ARKS.values(), *OWNED)}
LABELLED_BY_APPLICATION: Final = frozenset({POD, RBGS})
"""Kinds watched by their `arks.ai/application` label (upstream's objects and ours
alike), not by our managed-by label."""


def kind_of(obj: dict[str, object]) -> KindInfo:
    """The KindInfo of a rendered object (KeyError for a kind we do not write)."""
    return BY_API[(str(obj.get("apiVersion")), str(obj.get("kind")))]
