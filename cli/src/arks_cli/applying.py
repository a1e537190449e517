"""`arks apply` and `arks delete`: writing objects to the platform (`backends.Resources`).

`apply` creates or updates each object (spec, labels and annotations; status is the
services') and prints what happened to it as kubectl does:
`arksapplication.arks.ai/app-qwen created|configured|unchanged`. All documents are
validated first (see `manifests`), so an invalid file changes nothing.

`delete` removes objects named on the command line or listed in manifests; an object
that does not exist is an error unless `--ignore-not-found`, and the remaining objects
are still deleted before the command fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from arks_cli.backends import Resources
from arks_cli.errors import CliError
from arks_cli.local_resources import LocalResources
from arks_cli.manifests import Manifest
from arks_cli.printing import qualified_name
from arks_common.errors import ArksError
from arks_common.resources import GROUP, KindInfo, kind_info
from arks_common.store import ObjectRef, ResourceStore

Echo = Callable[[str], None]


async def apply_manifests(
    target: Resources | ResourceStore, manifests: list[Manifest], echo: Echo
) -> None:
    """Apply every object in order, printing one line per object (`arks up` passes its
    local store)."""
    resources = LocalResources(target) if isinstance(target, ResourceStore) else target
    for manifest in manifests:
        ref = ObjectRef.of(manifest.obj)
        info = kind_info(ref.kind)
        try:
            outcome = await resources.apply(manifest)
        except ArksError as exc:
            raise CliError(f"{qualified_name(info, ref.name)}: {exc}") from exc
        echo(f"{qualified_name(info, ref.name)} {outcome}")


@dataclass(frozen=True)
class DeleteTarget:
    info: KindInfo
    namespace: str
    name: str


def targets_from_manifests(manifests: list[Manifest]) -> list[DeleteTarget]:
    return [
        DeleteTarget(kind_info(ref.kind), ref.namespace, ref.name)
        for ref in (ObjectRef.of(m.obj) for m in manifests)
    ]


async def all_targets(resources: Resources, info: KindInfo, namespace: str) -> list[DeleteTarget]:
    """Every object of a kind in a namespace (`delete KIND --all`)."""
    objects = await resources.list(info.kind, namespace)
    return [DeleteTarget(info, namespace, str(o["metadata"]["name"])) for o in objects]


async def delete_targets(
    resources: Resources, targets: list[DeleteTarget], *, ignore_not_found: bool, echo: Echo
) -> None:
    """Delete each target; missing ones fail the command after the others are deleted."""
    missing: list[str] = []
    for target in targets:
        try:
            existed = await resources.delete(target.info.kind, target.namespace, target.name)
        except ArksError as exc:
            raise CliError(f"{qualified_name(target.info, target.name)}: {exc}") from exc
        if existed:
            echo(f'{target.info.singular}.{GROUP} "{target.name}" deleted')
        elif not ignore_not_found:
            missing.append(f'{target.info.crd_name} "{target.name}" not found')
    if missing:
        raise CliError("\n".join(missing))
