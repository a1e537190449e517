"""`arks get`: list or fetch objects and print them as kubectl would.

Kinds may be any name `resolve_kind` accepts (kind, plural, singular, short name),
several separated by commas (`get arkapp,aep`), and `KIND/NAME` works too. Output:
the CRDs' printer columns (`-o wide` adds the priority-1 ones), or `yaml`, `json`
(one object, or a `List`), or `name`. Named objects that do not exist are reported
after the ones found, and make the command fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from arks_cli.backends import Resources
from arks_cli.errors import CliError
from arks_cli.printing import as_list, object_table, qualified_name, to_json, to_yaml
from arks_common.resources import GROUP, KindInfo, UnknownKindError, kind_info

Obj = dict[str, Any]
OUTPUTS = ("wide", "yaml", "json", "name")


@dataclass(frozen=True)
class Query:
    """What to get: kinds, optional names, and where."""

    kinds: list[KindInfo]
    names: list[str]
    namespace: str
    all_namespaces: bool


@dataclass
class Found:
    """Objects per kind, in the order asked, and the names that were not found."""

    by_kind: list[tuple[KindInfo, list[Obj]]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def objects(self) -> list[Obj]:
        return [obj for _, objects in self.by_kind for obj in objects]


def resolve_kinds(text: str) -> list[KindInfo]:
    """`arkapp,aep` -> their KindInfos; CliError naming the unknown one."""
    infos: list[KindInfo] = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            info = kind_info(part)
        except UnknownKindError as exc:
            raise CliError(str(exc)) from exc
        if info not in infos:
            infos.append(info)
    if not infos:
        raise CliError("you must specify the type of resource to get")
    return infos


def build_query(kind_arg: str, names: list[str], namespace: str, all_namespaces: bool) -> Query:
    """Parse `KIND [NAME...]` or `KIND/NAME`."""
    if "/" in kind_arg:
        if names:
            raise CliError(
                "there is no need to specify a resource type as a separate argument when "
                "passing arguments in resource/name form"
            )
        kind_arg, _, name = kind_arg.partition("/")
        names = [name]
    kinds = resolve_kinds(kind_arg)
    if names and len(kinds) > 1:
        raise CliError("names can only be given with a single resource type")
    if names and all_namespaces:
        raise CliError("a resource cannot be retrieved by name across all namespaces")
    return Query(kinds, names, namespace, all_namespaces)


async def fetch(resources: Resources, query: Query) -> Found:
    found = Found()
    for info in query.kinds:
        if query.names:
            objects = []
            for name in query.names:
                obj = await resources.get(info.kind, query.namespace, name)
                if obj is None:
                    found.missing.append(
                        f'Error from server (NotFound): {info.plural}.{GROUP} "{name}" not found'
                    )
                else:
                    objects.append(obj)
        else:
            objects = await resources.list(
                info.kind, None if query.all_namespaces else query.namespace
            )
        found.by_kind.append((info, objects))
    return found


def render(found: Found, query: Query, output: str | None) -> str:
    """The text `get` prints on stdout ('' when there is nothing to show)."""
    if output in ("yaml", "json"):
        objects = found.objects
        if not objects and query.names:
            return ""
        single = len(query.kinds) == 1 and len(query.names) == 1
        value = objects[0] if single and objects else as_list(objects)
        return to_yaml(value) if output == "yaml" else to_json(value) + "\n"
    if output == "name":
        lines = [
            qualified_name(info, str(obj["metadata"]["name"]))
            for info, objects in found.by_kind
            for obj in objects
        ]
        return "".join(line + "\n" for line in lines)
    qualify = len(query.kinds) > 1
    tables = [
        object_table(
            info,
            objects,
            wide=output == "wide",
            all_namespaces=query.all_namespaces,
            qualify=qualify,
        )
        for info, objects in found.by_kind
        if objects
    ]
    return "\n\n".join(tables) + "\n" if tables else ""


def nothing_found_message(query: Query) -> str:
    if query.all_namespaces:
        return "No resources found"
    return f"No resources found in {query.namespace} namespace."
