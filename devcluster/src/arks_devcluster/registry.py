"""The table of served resource types, looked up the ways the server needs.

By (group, version, plural) for REST paths, by (group, plural) for stored objects (an
object is stored once whatever version it is read in), by (apiVersion, kind) for objects
handed in directly. Types come and go (a CustomResourceDefinition registers its kind when
created and removes it when deleted); lookups of a type that is gone raise `KeyError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from arks_devcluster.resources import ResourceType


class Registry:
    def __init__(self, types: Iterable[ResourceType] = ()) -> None:
        self._by_resource: dict[tuple[str, str], ResourceType] = {}
        for rtype in types:
            self.register(rtype)

    def register(self, rtype: ResourceType) -> None:
        self._by_resource[(rtype.group, rtype.plural)] = rtype

    def unregister(self, group: str, plural: str) -> ResourceType | None:
        return self._by_resource.pop((group, plural), None)

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(list(self._by_resource.values()))

    def resource(self, group: str, plural: str) -> ResourceType:
        return self._by_resource[(group, plural)]

    def served(self, group: str, version: str, plural: str) -> ResourceType | None:
        rtype = self._by_resource.get((group, plural))
        if rtype is None or version not in rtype.all_versions:
            return None
        return rtype

    def by_kind(self, api_version: str, kind: str) -> ResourceType:
        group, _, version = api_version.rpartition("/")
        for rtype in self._by_resource.values():
            if rtype.group == group and rtype.kind == kind and version in rtype.all_versions:
                return rtype
        raise KeyError(f"{api_version} {kind} is not registered")

    def group_versions(self) -> dict[str, list[str]]:
        """group -> its served versions, the preferred one first."""
        out: dict[str, list[str]] = {}
        for rtype in self._by_resource.values():
            versions = out.setdefault(rtype.group, [])
            for version in rtype.all_versions:
                if version not in versions:
                    versions.append(version)
        return out
