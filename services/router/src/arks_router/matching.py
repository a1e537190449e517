"""An endpoint's `matchConfigs`, compiled: does a request match one of them?

Gateway API HTTPRouteMatch semantics (what Envoy applies to upstream Arks' HTTPRoute):
- the entries are ORed; within one entry, path, method, every header and every query
  parameter must hold (ANDed);
- path `Exact` compares the whole path, `PathPrefix` matches whole path elements
  (`/v1` matches `/v1` and `/v1/x`, not `/v1x`; a trailing `/` in the value is
  ignored), `RegularExpression` must match the whole path;
- header names compare case-insensitively; `Exact` compares the value,
  `RegularExpression` must match the whole value; a header the request repeats is
  matched against its values joined by `,` (as Envoy does); of two conditions on the
  same name only the first counts;
- query parameter names compare exactly (case-sensitive); the first value of a
  repeated parameter is the one matched;
- `method` compares exactly.

The path matched is the request's normal-form path (`surface` refuses any other), so
no encoding can slip a request past a match. An invalid regular expression never
matches (logged once when the route table is loaded): a typo must not open a route.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from arks_common.events import HeaderMatch, PathMatch

log = logging.getLogger(__name__)

Condition = Callable[[str], bool]


def _never(_: str) -> bool:
    return False


def _value_test(kind: str, value: str, what: str) -> Condition:
    if kind == "RegularExpression":
        try:
            pattern = re.compile(value)
        except re.error:
            log.warning("invalid RegularExpression %s match %r: it never matches", what, value)
            return _never
        return lambda given: pattern.fullmatch(given) is not None
    return lambda given: given == value


def _path_test(match: PathMatch) -> Condition:
    if match.type in ("Exact", "RegularExpression"):
        return _value_test(match.type, match.value, "path")
    prefix = match.value.rstrip("/")
    if not prefix:
        return lambda path: True
    return lambda path: path == prefix or path.startswith(prefix + "/")


def _first_by_name(items: Sequence[HeaderMatch], *, fold: bool) -> list[HeaderMatch]:
    seen: set[str] = set()
    kept: list[HeaderMatch] = []
    for item in items:
        name = item.name.lower() if fold else item.name
        if name not in seen:
            seen.add(name)
            kept.append(item)
    return kept


@dataclass(frozen=True, slots=True)
class Request:
    """What a match may look at: method, normal-form path, headers, raw query string."""

    method: str
    path: str
    headers: Sequence[tuple[bytes, bytes]]
    query: bytes = b""

    def header(self, name: bytes) -> str | None:
        values = [v.decode("latin-1") for k, v in self.headers if k == name]
        return ",".join(values) if values else None

    def query_param(self, name: str) -> str | None:
        if not self.query:
            return None
        values = urllib.parse.parse_qs(self.query.decode("latin-1"), keep_blank_values=True)
        found = values.get(name)
        return found[0] if found else None


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """One compiled matchConfigs entry."""

    path: Condition
    method: str | None
    headers: tuple[tuple[bytes, Condition], ...]
    query_params: tuple[tuple[str, Condition], ...]

    @classmethod
    def of(cls, match: PathMatch) -> RouteMatch:
        return cls(
            path=_path_test(match),
            method=match.method,
            headers=tuple(
                (h.name.lower().encode("latin-1"), _value_test(h.type, h.value, "header"))
                for h in _first_by_name(match.headers, fold=True)
            ),
            query_params=tuple(
                (q.name, _value_test(q.type, q.value, "query parameter"))
                for q in _first_by_name(match.query_params, fold=False)
            ),
        )

    def __call__(self, request: Request) -> bool:
        if self.method is not None and request.method != self.method:
            return False
        if not self.path(request.path):
            return False
        for name, test in self.headers:
            value = request.header(name)
            if value is None or not test(value):
                return False
        for param, test in self.query_params:
            value = request.query_param(param)
            if value is None or not test(value):
                return False
        return True
