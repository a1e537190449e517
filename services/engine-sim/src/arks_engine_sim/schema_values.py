"""JSON values that satisfy a JSON Schema, as guided decoding makes a real engine's
output satisfy one (tool-call arguments, `response_format: json_schema`).

Covers what function and response schemas use in practice: `type` (one or a list),
`enum`, `const`, `properties` / `required` / `additionalProperties` /
`minProperties` / `maxProperties`, `items` / `prefixItems` / `minItems` / `maxItems` /
`uniqueItems` / `contains`, strings (`minLength`, `maxLength`, `pattern`, common
`format`s), numbers (`minimum`, `maximum`, both exclusive forms, `multipleOf`),
`anyOf` / `oneOf` / `allOf`, and local `$ref`s (`#/$defs/...`, as pydantic emits);
numbers and formatted strings come from schema_scalars.py.
Optional properties are included at random; strings are made of the model's words.
Past `_SHALLOW` levels of nesting only what is required is generated, so recursive
schemas end.

Failure mode: `Unsatisfiable` for what cannot be generated (`false`, empty enums,
contradictory bounds, recursion without end). The caller validates every value with
jsonschema and retries, so keywords not modelled here only cost retries.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from arks_engine_sim.regex_strings import Unsupported, matching
from arks_engine_sim.schema_scalars import SPAN, Unsatisfiable, formatted, number

_SHALLOW = 6
_TOO_DEEP = 40
_OBJECT_HINTS = ("properties", "required", "additionalProperties", "minProperties")
_ARRAY_HINTS = ("items", "prefixItems", "minItems", "maxItems", "contains")
_STRING_HINTS = ("minLength", "maxLength", "pattern", "format")
_NUMBER_HINTS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


class ValueGenerator:
    def __init__(self, root: Any, rng: random.Random, words: Sequence[str]) -> None:
        self.root = root
        self.rng = rng
        self.words = words

    def value(self) -> Any:
        return self.generate(self.root, 0)

    def word(self) -> str:
        return self.rng.choice(self.words)

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while isinstance(schema.get("$ref"), str):
            ref = schema["$ref"]
            if not ref.startswith("#"):
                raise Unsatisfiable(f"only local $refs are followed, not {ref!r}")
            target: Any = self.root
            for part in ref[1:].split("/")[1:]:
                key = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(target, dict) or key not in target:
                    raise Unsatisfiable(f"$ref {ref!r} points nowhere")
                target = target[key]
            if target is True:
                target = {}
            if not isinstance(target, dict):
                raise Unsatisfiable(f"$ref {ref!r} is not a schema object")
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **rest}
            seen += 1
            if seen > _TOO_DEEP:
                raise Unsatisfiable("$ref cycle")
        return schema

    def generate(self, schema: Any, depth: int) -> Any:
        if depth > _TOO_DEEP:
            raise Unsatisfiable("the schema nests without end")
        if schema is True or schema is None:
            return self._scalar()
        if schema is False:
            raise Unsatisfiable("`false` admits no value")
        if not isinstance(schema, dict):
            raise Unsatisfiable("a schema must be an object or a boolean")
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            if not schema["enum"]:
                raise Unsatisfiable("empty enum")
            return self.rng.choice(schema["enum"])
        if "allOf" in schema:
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                merged = _merge(merged, self._resolve(part) if isinstance(part, dict) else {})
            return self.generate(merged, depth)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                base = {k: v for k, v in schema.items() if k != key}
                option = self._pick_option(schema[key], depth)
                return self.generate(_merge(base, option), depth)
        kind = self._pick_type(schema, depth)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind == "string":
            return self._string(schema)
        if kind in ("integer", "number"):
            return number(schema, self.rng, integer=kind == "integer")
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        return self._scalar()

    def _pick_option(self, options: list[Any], depth: int) -> dict[str, Any]:
        resolved = [self._resolve(o) if isinstance(o, dict) else {} for o in options]
        if not resolved:
            raise Unsatisfiable("empty anyOf/oneOf")
        if depth >= _SHALLOW:
            # Deep down, prefer branches that end the recursion.
            flat = [o for o in resolved if o.get("type") not in ("object", "array")]
            if flat:
                return self.rng.choice(flat)
        return self.rng.choice(resolved)

    def _pick_type(self, schema: dict[str, Any], depth: int) -> str | None:
        kind = schema.get("type")
        if isinstance(kind, list):
            if not kind:
                raise Unsatisfiable("empty type list")
            if depth >= _SHALLOW and "null" in kind:
                return "null"
            return str(self.rng.choice(kind))
        if isinstance(kind, str):
            return kind
        for hints, name in (
            (_OBJECT_HINTS, "object"),
            (_ARRAY_HINTS, "array"),
            (_STRING_HINTS, "string"),
            (_NUMBER_HINTS, "number"),
        ):
            if any(h in schema for h in hints):
                return name
        return None

    def _scalar(self) -> Any:
        pick = self.rng.randrange(3)
        if pick == 0:
            return self.word()
        if pick == 1:
            return self.rng.randint(0, SPAN)
        return self.rng.random() < 0.5

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties: dict[str, Any] = schema.get("properties") or {}
        required = [str(name) for name in schema.get("required") or []]
        extra = schema.get("additionalProperties", True)
        out: dict[str, Any] = {}
        optional = [name for name in properties if name not in required]
        for name in required:
            out[name] = self.generate(properties.get(name, extra), depth + 1)
        for name in optional:
            if depth < _SHALLOW and self.rng.random() < 0.6:
                out[name] = self.generate(properties[name], depth + 1)
        missing = [name for name in optional if name not in out]
        while len(out) < schema.get("minProperties", 0):
            if missing:
                name = missing.pop(0)
                out[name] = self.generate(properties[name], depth + 1)
            elif extra is not False:
                out[f"{self.word()}_{len(out)}"] = self.generate(extra, depth + 1)
            else:
                raise Unsatisfiable("minProperties exceeds the properties allowed")
        limit = schema.get("maxProperties")
        for name in reversed(list(out)):
            if limit is None or len(out) <= limit:
                break
            if name not in required:
                del out[name]
        return out

    def _array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        prefix: list[Any] = schema.get("prefixItems") or []
        items = schema.get("items", True)
        if isinstance(items, list):  # draft 2019 tuple form
            prefix, items = items, schema.get("additionalItems", True)
        low = int(schema.get("minItems", 0))
        high = schema.get("maxItems")
        if items is False:
            high = len(prefix) if high is None else min(int(high), len(prefix))
        top = low + 3 if high is None else min(int(high), low + 3)
        if top < low:
            raise Unsatisfiable("maxItems below minItems")
        count = self.rng.randint(low, top) if depth < _SHALLOW else low
        out: list[Any] = []
        unique = bool(schema.get("uniqueItems"))
        for index in range(count):
            element = prefix[index] if index < len(prefix) else items
            value = self.generate(element, depth + 1)
            for _ in range(8):
                if not unique or value not in out:
                    break
                value = self.generate(element, depth + 1)
            out.append(value)
        if "contains" in schema:
            wanted = self.generate(schema["contains"], depth + 1)
            if out:
                out[0] = wanted
            else:
                out.append(wanted)
        return out

    def _string(self, schema: dict[str, Any]) -> str:
        if isinstance(schema.get("pattern"), str):
            try:
                return matching(schema["pattern"], self.rng)
            except Unsupported as exc:
                raise Unsatisfiable(str(exc)) from None
        shaped = formatted(schema.get("format"), self.rng, self.word)
        if shaped is not None:
            return shaped
        low = int(schema.get("minLength", 0))
        high = schema.get("maxLength")
        text = " ".join(self.word() for _ in range(self.rng.randint(1, 4)))
        while len(text) < low:
            text += " " + self.word()
        if high is not None:
            text = text[: int(high)]
            if text.endswith(" "):
                text = text[:-1] + "s"
        return text


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`allOf` / branch merging: properties and required lists combine, the rest
    overrides (good enough for the `allOf: [{$ref}]` and `{anyOf, description}` shapes
    generators emit; validation catches the rest)."""
    merged = {**base, **extra}
    if "properties" in base and "properties" in extra:
        merged["properties"] = {**base["properties"], **extra["properties"]}
    if "required" in base and "required" in extra:
        merged["required"] = list(dict.fromkeys([*base["required"], *extra["required"]]))
    return merged


def free_object(rng: random.Random, words: Sequence[str]) -> dict[str, Any]:
    """Any JSON object (`response_format: json_object`): a few word-named fields."""
    out: dict[str, Any] = {}
    for index in range(rng.randint(1, 4)):
        key = rng.choice(words)
        if key in out:
            key = f"{key}_{index}"
        pick = rng.randrange(4)
        if pick == 0:
            out[key] = rng.randint(0, SPAN)
        elif pick == 1:
            out[key] = rng.random() < 0.5
        elif pick == 2:
            out[key] = [rng.choice(words) for _ in range(rng.randint(1, 3))]
        else:
            out[key] = " ".join(rng.choice(words) for _ in range(rng.randint(1, 5)))
    return out
