"""Admission: what every write goes through before it is stored.

In order, as the real server: metadata (name or generateName, labels: see `names`); for a
CustomResourceDefinition its own checks (`crd_registry.check_crd`); for a custom
resource with a schema, pruning of unknown fields (refused instead with 400 when the
client asked for `fieldValidation=Strict`, as kubectl does by default), defaults, then
schema validation and the CEL rules (with the stored object as `oldSelf`). All causes
found are reported together in one 422 Invalid.

The object is changed in place (pruned, defaulted); the caller stores what is left.
"""

from __future__ import annotations

from typing import Any

from arks_devcluster import cel_rules, names, pruning, schema
from arks_devcluster.crd_registry import GROUP as CRD_GROUP
from arks_devcluster.crd_registry import PLURAL as CRD_PLURAL
from arks_devcluster.crd_registry import check_crd
from arks_devcluster.errors import ApiError, invalid
from arks_devcluster.resources import ResourceType

Obj = dict[str, Any]


def admit(rtype: ResourceType, obj: Obj, old: Obj | None, *, strict: bool = False) -> None:
    """Check and complete `obj` (about to replace `old`, or be created); raise ApiError."""
    causes = names.metadata_causes(rtype, obj)
    if rtype.group == CRD_GROUP and rtype.plural == CRD_PLURAL:
        check_crd(obj)
    if rtype.schema is not None:
        dropped = pruning.prune(obj, rtype.schema)
        if dropped and strict:
            unknown = ", ".join(f'unknown field "{path}"' for path in dropped)
            raise ApiError(
                400,
                "BadRequest",
                f'{rtype.kind} in version "{rtype.version}" cannot be handled as a '
                f"{rtype.kind}: strict decoding error: {unknown}",
            )
        pruning.apply_defaults(obj, rtype.schema)
        causes += schema.validate(obj, rtype.schema)
        if not causes:  # as upstream: CEL runs on objects that pass the schema
            previous = old if old is not None else cel_rules.missing()
            causes += cel_rules.check(rtype.schema, obj, previous)
    if causes:
        name = str((obj.get("metadata") or {}).get("name") or "")
        raise invalid(rtype.kind, name, rtype.group, causes)
