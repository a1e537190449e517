"""Parsing and dumping resources: dicts and multi-document YAML in, models out, and back.

Failures raise `ResourceError` (a `PermanentError`): one `FieldProblem` per invalid field,
each naming the document (1-based, counting empty documents so the number matches the
file), the object, the field path (`spec.qos[0].rateLimits[1].type`) and why. Unknown
fields are dropped without error, as a structural CRD prunes them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from arks_common.errors import PermanentError
from arks_common.resources.meta import API_VERSION, ArksResource
from arks_common.resources.registry import KIND_INFO, AnyResource, UnknownKindError

# A validator message that starts with a relative field path ("port: ...", "[1].type: ...")
# is attached to the location pydantic reports, so the full path names the field.
_SCALARS = (str, int, float, bool)
# Never echo these values into an error: they are secrets.
_SECRET_FIELDS = ("token",)
_RELATIVE_PATH = re.compile(r"^((?:\[\d+\]|[A-Za-z_]\w*)(?:\.[A-Za-z_]\w*|\[\d+\])*): ")


@dataclass(frozen=True)
class FieldProblem:
    """One reason an object is invalid."""

    path: str
    message: str
    document: int | None = None
    kind: str | None = None
    name: str | None = None

    def __str__(self) -> str:
        where = []
        if self.document is not None:
            where.append(f"document {self.document}")
        if self.kind or self.name:
            where.append(f"({self.kind or '?'} {self.name or '?'})")
        prefix = " ".join(where)
        field = f"{self.path}: " if self.path else ""
        return f"{prefix + ': ' if prefix else ''}{field}{self.message}"


class ResourceError(PermanentError, ValueError):
    """An object or document is not a valid arks.ai/v1 resource."""

    def __init__(self, problems: Iterable[FieldProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems), reason="InvalidResource")


def _join(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _problem(error: ErrorDetails, **where: Any) -> FieldProblem:
    path = _join(error["loc"])
    message = error["msg"]
    if error["type"] == "value_error":
        message = message.removeprefix("Value error, ")
        match = _RELATIVE_PATH.match(message)
        if match:
            sub = match.group(1)
            path = f"{path}{sub}" if sub.startswith("[") or not path else f"{path}.{sub}"
            message = message[match.end() :]
    elif error["type"] == "missing":
        message = "required"
    elif isinstance(error.get("input"), _SCALARS) and not path.endswith(_SECRET_FIELDS):
        message = f"{message} (got {error['input']!r})"
    return FieldProblem(path=path, message=message, **where)


def problems_of(exc: ValidationError, **where: Any) -> list[FieldProblem]:
    """FieldProblems of a pydantic ValidationError (keyword args: document, kind, name)."""
    return [_problem(error, **where) for error in exc.errors(include_url=False)]


def _identify(obj: dict[str, Any]) -> tuple[str | None, str | None]:
    kind = obj.get("kind")
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return (kind if isinstance(kind, str) else None, name if isinstance(name, str) else None)


def _parse(obj: object, document: int | None) -> AnyResource:
    if not isinstance(obj, dict):
        raise ResourceError(
            [
                FieldProblem(
                    "", f"expected a mapping (an object), got {type(obj).__name__}", document
                )
            ]
        )
    kind, name = _identify(obj)
    where: dict[str, Any] = {"document": document, "kind": kind, "name": name}
    api_version = obj.get("apiVersion")
    if api_version != API_VERSION:
        message = f"must be {API_VERSION!r} (got {api_version!r})"
        raise ResourceError([FieldProblem("apiVersion", message, **where)])
    if kind is None:
        raise ResourceError([FieldProblem("kind", "required", **where)])
    info = KIND_INFO.get(kind)
    if info is None:
        message = str(UnknownKindError(kind))
        raise ResourceError([FieldProblem("kind", message, **where)])
    try:
        return cast(AnyResource, info.model.model_validate(obj))
    except ValidationError as exc:
        raise ResourceError(problems_of(exc, **where)) from None


def parse_resource(obj: dict[str, Any]) -> AnyResource:
    """The model of one object (a dict as in YAML/JSON), dispatched on `kind`."""
    return _parse(obj, None)


def load_resources(text: str) -> list[AnyResource]:
    """Every object of a multi-document YAML text, in order; empty documents are skipped.

    All documents are checked before raising, so one error lists every invalid field.
    """
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise ResourceError([FieldProblem("", f"invalid YAML: {exc}")]) from None
    resources: list[AnyResource] = []
    problems: list[FieldProblem] = []
    for number, document in enumerate(documents, start=1):
        if document is None:
            continue
        try:
            resources.append(_parse(document, number))
        except ResourceError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ResourceError(problems)
    return resources


def dump_resource(resource: ArksResource[Any, Any]) -> dict[str, Any]:
    """A JSON-compatible dict of a resource: JSON field names, no null fields."""
    return resource.model_dump(mode="json", by_alias=True, exclude_none=True)


def dump_resources_yaml(resources: Iterable[ArksResource[Any, Any]]) -> str:
    """Multi-document YAML of resources (the inverse of `load_resources`)."""
    return yaml.safe_dump_all(
        [dump_resource(r) for r in resources], sort_keys=False, default_flow_style=False
    )
