"""Updates as the server performs them: the object as it will be stored is admitted, its
managedFields updated, then written.

A status write keeps the stored spec (only `status` comes from the body), a main-path
write keeps the stored status (for kinds with a status subresource); admission sees the
resulting object, so a status write is validated together with the stored spec.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from arks_devcluster import managed_fields
from arks_devcluster.resources import ResourceType

if TYPE_CHECKING:
    from arks_devcluster.api import FakeKubeApi

Obj = dict[str, Any]


def write(
    api: FakeKubeApi,
    rtype: ResourceType,
    ns: str,
    name: str,
    new: Obj,
    *,
    status: bool,
    strict: bool,
    manager: str,
    api_version: str,
    applied: bool = False,
    dry_run: bool = False,
) -> Obj:
    """Update an object (or only its status), admitting the object as it will be stored:
    a status write keeps the stored spec, a main-path write keeps the stored status.
    managedFields: an update is tracked here; an apply (`applied`) brings its own.
    `dry_run`: admitted and answered, not stored."""
    current = api.store.current(rtype, ns, name)
    candidate = copy.deepcopy(current if status else new)
    if status:
        candidate["metadata"]["resourceVersion"] = new.get("metadata", {}).get("resourceVersion")
        carried = new
    else:
        carried = current if rtype.status_subresource else new
    if "status" in carried:
        candidate["status"] = copy.deepcopy(carried["status"])
    else:
        candidate.pop("status", None)
    if applied:
        candidate["metadata"]["managedFields"] = new["metadata"].get("managedFields", [])
    api.admit(rtype, candidate, current, strict=strict)
    if not applied:
        managed_fields.track_update(
            current, candidate, rtype.schema, manager, api_version, status=status
        )
    return api.store.update(rtype, ns, name, candidate, status_only=status, dry_run=dry_run)
