"""CustomResourceDefinitions as data: creating one makes its kind served.

The registry watches the store: when an apiextensions.k8s.io/v1 CustomResourceDefinition
is created or changed, its kind is (re)registered from the CRD — group, served versions
(the preferred one first, by Kubernetes' version priority), scope, plural, singular,
short names, categories, the status and scale subresources, the printer columns and the
structural schema of the preferred version — and the CRD's status says so
(`NamesAccepted` and `Established` conditions, `acceptedNames`, `storedVersions`), as
`kubectl wait --for condition=established` expects. When a CRD is deleted its kind stops
being served and every object of it is deleted, as a real server does.

A CRD whose `metadata.name` is not `<plural>.<group>` is refused (422), as upstream.
All versions of a kind share one stored copy and one schema (that of the preferred
version); the server converts between versions by rewriting `apiVersion` only (the
`None` conversion strategy).
"""

from __future__ import annotations

import re
from typing import Any

from arks_devcluster.errors import ApiError
from arks_devcluster.resources import ResourceType, ScaleSubresource
from arks_devcluster.store import Event, Store

Obj = dict[str, Any]
GROUP = "apiextensions.k8s.io"
PLURAL = "customresourcedefinitions"
_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key, best first: GA before beta before alpha, then higher numbers; versions
    that do not look like Kubernetes versions last, alphabetically."""
    m = _VERSION.match(version)
    if m is None:
        return (3, 0, 0, version)
    major, level, minor = int(m[1]), m[2], int(m[3] or 0)
    rank = {None: 0, "beta": 1, "alpha": 2}[level]
    return (rank, -major, -minor, version)


def check_crd(crd: Obj) -> None:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural = spec.get("group", ""), names.get("plural", "")
    name = crd.get("metadata", {}).get("name", "")
    causes = []
    if not group:
        causes.append({"field": "spec.group", "message": "Required value"})
    if not plural or not names.get("kind"):
        causes.append({"field": "spec.names", "message": "Required value: plural and kind"})
    if name != f"{plural}.{group}":
        causes.append(
            {
                "field": "metadata.name",
                "message": f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
            }
        )
    if not [v for v in spec.get("versions") or [] if v.get("served")]:
        causes.append({"field": "spec.versions", "message": "Required value: a served version"})
    if causes:
        listed = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
        raise ApiError(
            422,
            "Invalid",
            f'CustomResourceDefinition.apiextensions.k8s.io "{name}" is invalid: {listed}',
            {"name": name, "group": GROUP, "kind": "CustomResourceDefinition", "causes": causes},
        )


def _scale(sub: Obj | None) -> ScaleSubresource | None:
    if sub is None:
        return None
    return ScaleSubresource(
        spec_replicas=sub.get("specReplicasPath", ".spec.replicas"),
        status_replicas=sub.get("statusReplicasPath", ".status.replicas"),
        label_selector=sub.get("labelSelectorPath"),
    )


def rtype_from_crd(crd: Obj) -> ResourceType:
    spec = crd["spec"]
    names = spec["names"]
    served = sorted(
        (v for v in spec["versions"] if v.get("served")),
        key=lambda v: version_priority(v["name"]),
    )
    preferred = served[0]
    subresources = preferred.get("subresources") or {}
    schema = (preferred.get("schema") or {}).get("openAPIV3Schema")
    return ResourceType(
        group=spec["group"],
        version=preferred["name"],
        plural=names["plural"],
        kind=names["kind"],
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        status_subresource="status" in subresources,
        custom=True,
        singular=names.get("singular", ""),
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        scale=_scale(subresources.get("scale")),
        versions=tuple(v["name"] for v in served),
        printer_columns=tuple(preferred.get("additionalPrinterColumns") or ()),
        schema=schema,
    )


def _status(crd: Obj, now: str) -> Obj:
    names = dict(crd["spec"]["names"])
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", f"{names['kind']}List")
    conditions = [
        {
            "type": kind,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": now,
        }
        for kind, reason, message in (
            ("NamesAccepted", "NoConflicts", "no conflicts found"),
            ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        )
    ]
    stored = [v["name"] for v in crd["spec"]["versions"] if v.get("storage")]
    return {"acceptedNames": names, "conditions": conditions, "storedVersions": stored}


class CrdRegistry:
    """Keeps the store's registry in step with the CRDs stored."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.observers.append(self._on_change)

    def _on_change(self, event: Event) -> None:
        if event.rtype.group != GROUP or event.rtype.plural != PLURAL:
            return
        crd = event.obj
        if event.type == "DELETED":
            self._remove(crd)
            return
        rtype = rtype_from_crd(crd)
        self.store.registry.register(rtype)
        status = _status(crd, crd["metadata"]["creationTimestamp"])
        if crd.get("status") != status:
            self.store.update(
                event.rtype,
                "",
                crd["metadata"]["name"],
                {**crd, "status": status},
                status_only=True,
            )

    def _remove(self, crd: Obj) -> None:
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        try:
            rtype = self.store.registry.resource(group, plural)
        except KeyError:
            return
        for obj in list(self.store.items(rtype, None)):
            meta = obj["metadata"]
            meta["finalizers"] = []
            self.store.delete(rtype, meta.get("namespace", ""), meta["name"])
        self.store.registry.unregister(group, plural)
