"""What a resource path names (`Target`), and objects as the request's version reads them.

`[namespaces/<ns>/]<plural>[/<name>[/<subresource>]]` under `/api/<v>` or
`/apis/<group>/<v>`: a type not served, a namespace on a cluster-scoped type or a
subresource the type does not have is 404. events.k8s.io Events are a view of the core
ones (`events`): the target then stores core Events and converts on the way in and out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from arks_devcluster import events
from arks_devcluster.errors import no_resource
from arks_devcluster.resources import ResourceType

if TYPE_CHECKING:
    from arks_devcluster.api import FakeKubeApi

Obj = dict[str, Any]


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
        self.view: ResourceType | None = None
        """events.k8s.io/v1 Events: a view of the core ones (see `events`)."""
        if (rtype.group, rtype.plural) == (events.GROUP, "events"):
            self.view, rtype = rtype, api.registry.resource("", "events")
        self.rtype = rtype
        self.version = version
        self.name = parts[1] if len(parts) > 1 else None
        self.sub = parts[2] if len(parts) > 2 else None
        if len(parts) > 3 or (self.sub is not None and not self._serves(self.sub)):
            raise no_resource()

    def _serves(self, sub: str) -> bool:
        if sub == "scale":
            return self.rtype.scale is not None
        if sub in self.rtype.subresources:
            return True
        return sub == "status" and self.rtype.status_subresource

    @property
    def api_version(self) -> str:
        group = (self.view or self.rtype).group
        return f"{group}/{self.version}" if group else self.version

    @property
    def ns(self) -> str:
        return self.namespace or ""


def stored(obj: Obj, target: Target) -> Obj:
    """A body written through a view, in the stored shape."""
    return events.to_core(obj) if target.view is not None else obj


def in_version(obj: Obj, target: Target) -> Obj:
    """An object as read through the version of the request's path (the `None`
    conversion: only apiVersion differs between versions)."""
    rtype = target.rtype
    if target.view is not None:
        return events.from_core(obj)
    if target.version == rtype.version or obj.get("kind") != rtype.kind:
        return obj
    group = f"{rtype.group}/" if rtype.group else ""
    return {**obj, "apiVersion": f"{group}{target.version}"}
