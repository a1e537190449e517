"""What the server serves: one `ResourceType` per REST resource, and the built-in ones.

A resource type is named by (group, plural); its kind, scope, short names, categories and
subresources are what discovery announces and what the REST layer routes on. Built-in
types are declared here; custom resources are added when a CustomResourceDefinition is
created (see `crd_registry`). A type not in the table answers 404, as a real server does
for a resource it does not serve.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class ScaleSubresource:
    """Where `/scale` reads and writes the replicas of an object (JSON paths like
    `.spec.replicas`), as a CRD's `subresources.scale` declares them."""

    spec_replicas: str = ".spec.replicas"
    status_replicas: str = ".status.replicas"
    label_selector: str | None = ".status.selector"


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    """The preferred (and storage) version."""
    plural: str
    kind: str
    namespaced: bool = True
    status_subresource: bool = True
    custom: bool = True
    """A custom resource: no strategic merge patch, schema from its CRD."""
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = (
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    )
    scale: ScaleSubresource | None = None
    versions: tuple[str, ...] = ()
    """Every served version (the preferred one first); empty means only `version`."""
    printer_columns: tuple[Obj, ...] = field(default=(), compare=False)
    """A CRD's additionalPrinterColumns of the preferred version (for `kubectl get`)."""
    schema: Obj | None = field(default=None, compare=False)
    """The structural openAPIV3Schema of a custom resource (None: not validated)."""
    subresources: tuple[str, ...] = ()
    """Extra subresources served by handlers of their own (e.g. `token`)."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def all_versions(self) -> tuple[str, ...]:
        return self.versions or (self.version,)

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()


def _builtin(
    group: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    status: bool = True,
    short: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
    scale: bool = False,
    subresources: tuple[str, ...] = (),
) -> ResourceType:
    return ResourceType(
        group,
        "v1",
        plural,
        kind,
        namespaced=namespaced,
        status_subresource=status,
        custom=False,
        short_names=short,
        categories=categories,
        scale=ScaleSubresource() if scale else None,
        subresources=subresources,
    )


def builtin_types() -> list[ResourceType]:
    """The built-in types Arks, its manifests and kubectl touch."""
    return [
        _builtin("", "pods", "Pod", short=("po",), categories=("all",), subresources=("log",)),
        _builtin("", "services", "Service", short=("svc",), categories=("all",)),
        _builtin("", "configmaps", "ConfigMap", status=False, short=("cm",)),
        _builtin("", "secrets", "Secret", status=False),
        _builtin("", "persistentvolumeclaims", "PersistentVolumeClaim", short=("pvc",)),
        _builtin("", "events", "Event", status=False, short=("ev",)),
        _builtin("", "namespaces", "Namespace", namespaced=False, short=("ns",)),
        _builtin("", "nodes", "Node", namespaced=False, short=("no",)),
        _builtin("", "endpoints", "Endpoints", status=False, short=("ep",)),
        _builtin(
            "",
            "serviceaccounts",
            "ServiceAccount",
            status=False,
            short=("sa",),
            subresources=("token",),
        ),
        _builtin(
            "apps",
            "deployments",
            "Deployment",
            short=("deploy",),
            categories=("all",),
            scale=True,
        ),
        _builtin(
            "apps", "replicasets", "ReplicaSet", short=("rs",), categories=("all",), scale=True
        ),
        _builtin(
            "apps", "statefulsets", "StatefulSet", short=("sts",), categories=("all",), scale=True
        ),
        _builtin("batch", "jobs", "Job", categories=("all",)),
        _builtin("policy", "poddisruptionbudgets", "PodDisruptionBudget", short=("pdb",)),
        _builtin("coordination.k8s.io", "leases", "Lease", status=False),
        _builtin("events.k8s.io", "events", "Event", status=False, short=("ev",)),
        _builtin("rbac.authorization.k8s.io", "roles", "Role", status=False),
        _builtin("rbac.authorization.k8s.io", "rolebindings", "RoleBinding", status=False),
        _builtin(
            "rbac.authorization.k8s.io",
            "clusterroles",
            "ClusterRole",
            namespaced=False,
            status=False,
        ),
        _builtin(
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            "ClusterRoleBinding",
            namespaced=False,
            status=False,
        ),
        _builtin(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            namespaced=False,
            short=("crd", "crds"),
        ),
    ]
