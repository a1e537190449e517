"""The six kinds by name: plural, singular, short names, and lookup for CLIs.

`resolve_kind` accepts what kubectl accepts, case-insensitively: the kind, the singular,
the plural, a short name, or `<plural>.arks.ai`. An unknown name raises `UnknownKindError`
listing the known kinds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from arks_common.resources.application import ArksApplication
from arks_common.resources.disaggregated import ArksDisaggregatedApplication
from arks_common.resources.endpoint import ArksEndpoint
from arks_common.resources.meta import GROUP, ArksResource
from arks_common.resources.model import ArksModel
from arks_common.resources.quota import ArksQuota
from arks_common.resources.token import ArksToken

AnyResource: TypeAlias = (
    ArksModel
    | ArksApplication
    | ArksDisaggregatedApplication
    | ArksEndpoint
    | ArksToken
    | ArksQuota
)
ResourceType: TypeAlias = type[ArksResource[Any, Any]]


@dataclass(frozen=True)
class KindInfo:
    """Names of one kind, as in its CRD."""

    kind: str
    model: ResourceType
    plural: str
    singular: str
    short_names: tuple[str, ...]

    @property
    def list_kind(self) -> str:
        """`<Kind>List`."""
        return f"{self.kind}List"

    @property
    def crd_name(self) -> str:
        """`<plural>.arks.ai`."""
        return f"{self.plural}.{GROUP}"


_INFOS = (
    KindInfo("ArksModel", ArksModel, "arksmodels", "arksmodel", ("am",)),
    KindInfo(
        "ArksApplication", ArksApplication, "arksapplications", "arksapplication", ("arkapp",)
    ),
    KindInfo(
        "ArksDisaggregatedApplication",
        ArksDisaggregatedApplication,
        "arksdisaggregatedapplications",
        "arksdisaggregatedapplication",
        ("arkdapp",),
    ),
    KindInfo("ArksEndpoint", ArksEndpoint, "arksendpoints", "arksendpoint", ("aep",)),
    # Upstream gives ArksToken no short name; `atk` is ours.
    KindInfo("ArksToken", ArksToken, "arkstokens", "arkstoken", ("atk",)),
    KindInfo("ArksQuota", ArksQuota, "arksquotas", "arksquota", ("aq",)),
)

#: Kind name -> names and model, in dependency order (models before applications, ...).
KIND_INFO: dict[str, KindInfo] = {info.kind: info for info in _INFOS}
#: Kind name -> model class.
KINDS: dict[str, ResourceType] = {info.kind: info.model for info in _INFOS}
#: Kind name -> plural resource name.
PLURALS: dict[str, str] = {info.kind: info.plural for info in _INFOS}
#: Kind name -> short names.
SHORT_NAMES: dict[str, tuple[str, ...]] = {info.kind: info.short_names for info in _INFOS}

_LOOKUP: dict[str, KindInfo] = {}
for _info in _INFOS:
    for _name in (_info.kind, _info.singular, _info.plural, _info.crd_name, *_info.short_names):
        _LOOKUP[_name.lower()] = _info


class UnknownKindError(LookupError):
    """A name that is no arks.ai/v1 kind, plural or short name."""

    def __init__(self, name: str) -> None:
        known = ", ".join(f"{i.kind} ({i.plural}, {'/'.join(i.short_names)})" for i in _INFOS)
        super().__init__(f"{name!r} is not an arks.ai/v1 resource; known: {known}")
        self.name = name


def kind_info(name: str) -> KindInfo:
    """Names of the kind designated by a kind, singular, plural or short name."""
    info = _LOOKUP.get(name.strip().lower())
    if info is None:
        raise UnknownKindError(name)
    return info


def resolve_kind(name: str) -> ResourceType:
    """The model class of a kind, singular, plural or short name (case-insensitive)."""
    return kind_info(name).model
