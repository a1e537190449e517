"""Strings that match a regular expression, for JSON Schema `pattern`s (guided decoding
honours them; so must the simulator's structured answers).

Walks the parse tree of Python's own regex parser (`re._parser`, loaded by name: it is
private and has no type stubs): literals, classes, ranges, categories (\\d \\w \\s),
`.`, groups, alternation and repeats (unbounded ones capped at a few repetitions).
Anchors and word boundaries generate nothing. Look-arounds, back-references and
conditionals raise `Unsupported`; the caller validates what it generates anyway.
"""

from __future__ import annotations

import importlib
import random
import string
from typing import Any

_PARSER: Any = importlib.import_module("re._parser")
_UNBOUNDED_EXTRA = 3
_CATEGORIES = {
    "CATEGORY_DIGIT": string.digits,
    "CATEGORY_WORD": string.ascii_letters + string.digits + "_",
    "CATEGORY_SPACE": " ",
    "CATEGORY_NOT_DIGIT": string.ascii_letters,
    "CATEGORY_NOT_WORD": " -.,",
    "CATEGORY_NOT_SPACE": string.ascii_letters + string.digits,
}
# What `.` and negated classes draw from: printable, no newline.
_ANY = string.ascii_letters + string.digits + " -_.,"


class Unsupported(ValueError):
    """The pattern uses a construct the generator does not model."""


def matching(pattern: str, rng: random.Random) -> str:
    try:
        tree = _PARSER.parse(pattern)
    except Exception as exc:  # re.error and friends; the schema check catches most
        raise Unsupported(f"invalid pattern {pattern!r}: {exc}") from None
    return _sequence(tree, rng)


def _sequence(items: Any, rng: random.Random) -> str:
    return "".join(_item(str(op), arg, rng) for op, arg in items)


def _item(op: str, arg: Any, rng: random.Random) -> str:
    if op == "LITERAL":
        return chr(arg)
    if op == "NOT_LITERAL":
        return rng.choice([c for c in _ANY if ord(c) != arg])
    if op == "ANY":
        return rng.choice(_ANY)
    if op == "IN":
        return _class(arg, rng)
    if op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        low, high, body = arg
        high = low + _UNBOUNDED_EXTRA if high == _PARSER.MAXREPEAT else min(high, low + 5)
        return "".join(_sequence(body, rng) for _ in range(rng.randint(low, high)))
    if op == "SUBPATTERN":
        return _sequence(arg[-1], rng)
    if op == "ATOMIC_GROUP":
        return _sequence(arg, rng)
    if op == "BRANCH":
        return _sequence(rng.choice(arg[1]), rng)
    if op == "AT":
        return ""
    raise Unsupported(f"regex construct {op} is not modelled")


def _class(members: Any, rng: random.Random) -> str:
    negate = False
    choices: list[str] = []
    for op, arg in members:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            choices.append(chr(arg))
        elif name == "RANGE":
            low, high = arg
            choices.extend(chr(c) for c in range(low, min(high, low + 255) + 1))
        elif name == "CATEGORY":
            choices.extend(_CATEGORIES.get(str(arg), ""))
        else:
            raise Unsupported(f"regex class member {name} is not modelled")
    if negate:
        excluded = set(choices)
        choices = [c for c in _ANY if c not in excluded]
    if not choices:
        raise Unsupported("empty character class")
    return rng.choice(choices)
