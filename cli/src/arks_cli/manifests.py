"""Reading manifests for `apply -f` and `delete -f`: files, directories and stdin.

Every document of every source is validated with `arks_common.resources.load_resources`
before anything is written, so an invalid document refuses the whole command and the
message names the source, the document, the object and the field. A namespace given
with `-n` fills in objects that name none; an object naming another one is refused, as
kubectl does.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from arks_cli.errors import CliError
from arks_common.resources import ResourceError, dump_resource, load_resources

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Manifest:
    """One validated object and where it came from."""

    source: str
    obj: dict[str, Any]


def _sources(paths: list[str]) -> list[tuple[str, str]]:
    texts: list[tuple[str, str]] = []
    for raw in paths:
        if raw == "-":
            texts.append(("<stdin>", sys.stdin.read()))
            continue
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in MANIFEST_SUFFIXES)
            if not files:
                raise CliError(f"{raw}: no .yaml, .yml or .json files in this directory")
        elif path.is_file():
            files = [path]
        else:
            raise CliError(f"{raw}: no such file or directory")
        for file in files:
            try:
                texts.append((str(file), file.read_text()))
            except (OSError, UnicodeDecodeError) as exc:
                raise CliError(f"{file}: cannot read: {exc}") from exc
    return texts


def _raw_namespaces(text: str) -> list[str | None]:
    """The namespace each non-empty document states (None when it states none)."""
    found: list[str | None] = []
    for document in yaml.safe_load_all(text):
        if document is None:
            continue
        meta = document.get("metadata") if isinstance(document, dict) else None
        namespace = meta.get("namespace") if isinstance(meta, dict) else None
        found.append(namespace if isinstance(namespace, str) and namespace else None)
    return found


def read_manifests(paths: list[str], namespace: str | None) -> list[Manifest]:
    """Every object of every source, validated and namespaced; CliError if any is invalid."""
    manifests: list[Manifest] = []
    problems: list[str] = []
    for source, text in _sources(paths):
        try:
            resources = load_resources(text)
        except ResourceError as exc:
            problems.extend(f"{source}: {problem}" for problem in exc.problems)
            continue
        for resource, stated in zip(resources, _raw_namespaces(text), strict=True):
            obj = dump_resource(resource)
            if namespace is not None:
                if stated is not None and stated != namespace:
                    problems.append(
                        f"{source}: the namespace from the provided object {stated!r} "
                        f"({resource.kind} {resource.name}) does not match the namespace "
                        f"{namespace!r}"
                    )
                    continue
                obj["metadata"]["namespace"] = namespace
            manifests.append(Manifest(source, obj))
    if problems:
        raise CliError("\n".join(problems))
    if not manifests:
        raise CliError("no objects passed to the command")
    return manifests
