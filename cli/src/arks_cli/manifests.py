"""Reading manifests for `apply -f` and `delete -f`: files, directories and stdin.

Every document of every source is validated with `arks_common.resources.load_resources`
before anything is written, so an invalid document refuses the whole command and the
message names the source, the document, the object and the field. A namespace given
with `-n` fills in objects that name none; an object naming another one is refused, as
kubectl does. Without `-n`, objects that name no namespace go to the platform's default
one (`default`, or the kubeconfig context's namespace on Kubernetes).

Each manifest keeps two forms of its object: `obj`, the validated model dumped with its
defaults (what the local store writes), and `document`, the object as written with its
namespace filled in (what server-side apply sends on Kubernetes, so the CLI owns only
the fields the file sets, as `kubectl apply --server-side`).
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
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
    document: dict[str, Any] = field(default_factory=dict)


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


def _documents(text: str) -> list[dict[str, Any]]:
    """The non-empty documents of a text `load_resources` accepted (so each is a mapping)."""
    return [document for document in yaml.safe_load_all(text) if document is not None]


def _stated_namespace(document: dict[str, Any]) -> str | None:
    """The namespace a document states (None when it states none)."""
    meta = document.get("metadata")
    namespace = meta.get("namespace") if isinstance(meta, dict) else None
    return namespace if isinstance(namespace, str) and namespace else None


def read_manifests(
    paths: list[str], namespace: str | None, default_namespace: str = "default"
) -> list[Manifest]:
    """Every object of every source, validated and namespaced; CliError if any is invalid.
    `namespace` is `-n` (None when not given); `default_namespace` is for objects that
    name none when it is not given."""
    manifests: list[Manifest] = []
    problems: list[str] = []
    for source, text in _sources(paths):
        try:
            resources = load_resources(text)
        except ResourceError as exc:
            problems.extend(f"{source}: {problem}" for problem in exc.problems)
            continue
        for resource, document in zip(resources, _documents(text), strict=True):
            obj = dump_resource(resource)
            stated = _stated_namespace(document)
            if namespace is not None and stated is not None and stated != namespace:
                problems.append(
                    f"{source}: the namespace from the provided object {stated!r} "
                    f"({resource.kind} {resource.name}) does not match the namespace "
                    f"{namespace!r}"
                )
                continue
            target = stated or namespace or default_namespace
            obj["metadata"]["namespace"] = target
            document = copy.deepcopy(document)
            document["metadata"]["namespace"] = target
            manifests.append(Manifest(source, obj, document))
    if problems:
        raise CliError("\n".join(problems))
    if not manifests:
        raise CliError("no objects passed to the command")
    return manifests
