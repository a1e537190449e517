"""Values generated from JSON Schemas validate against them (checked with jsonschema over
many seeds, pydantic's own schemas included), regex patterns are honoured, and what
cannot be met is refused rather than answered invalidly."""

from __future__ import annotations

import json
import random
import re
from typing import Any, Literal

import pytest
from jsonschema import Draft202012Validator
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field

from arks_engine_sim.errors import ApiError
from arks_engine_sim.regex_strings import Unsupported, matching
from arks_engine_sim.schema_scalars import Unsatisfiable
from arks_engine_sim.schema_values import ValueGenerator, free_object
from arks_engine_sim.structuring import schema_json
from arks_engine_sim.vocabulary import Vocabulary

WORDS = Vocabulary.builtin().words


class Address(BaseModel):
    street: str = Field(min_length=3)
    zip_code: str = Field(pattern=r"^\d{5}(-\d{4})?$")
    country: Literal["FR", "DE", "US"]


class Person(BaseModel):
    name: str
    age: int = Field(ge=0, le=130)
    score: float = Field(gt=0, lt=1)
    home: Address
    previous: list[Address] = Field(max_length=2)
    manager: Person | None = None
    nicknames: set[str] = Field(default_factory=set)


SCHEMAS: list[Any] = [
    Person.model_json_schema(),
    to_strict_json_schema(Person),  # what `client.chat.completions.parse` sends
    {"type": ["string", "integer", "null"]},
    {"type": "number", "multipleOf": 0.25, "minimum": -3, "maximum": 3},
    {"type": "integer", "multipleOf": 7, "exclusiveMinimum": 0, "exclusiveMaximum": 50},
    {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
               {"properties": {"b": {"const": True}}, "required": ["b"]}]},
    {"type": "array", "items": {"type": "string", "format": "ipv4"}, "minItems": 3},
    {"type": "object", "maxProperties": 1, "properties": {"x": {}, "y": {}}},
    {"type": "string", "maxLength": 0},
    True,
]  # fmt: skip


@pytest.mark.parametrize("index", range(len(SCHEMAS)))
def test_generated_values_validate(index: int):
    schema = SCHEMAS[index]
    validator = Draft202012Validator(schema)
    texts = set()
    for seed in range(60):
        text = schema_json(schema, random.Random(seed), WORDS, owner="response_format")
        validator.validate(json.loads(text))
        texts.add(text)
    assert len(texts) > 1 or index == len(SCHEMAS) - 2  # varied, unless only "" fits


def test_recursive_schemas_end():
    schema = Person.model_json_schema()
    for seed in range(200):
        value = ValueGenerator(schema, random.Random(seed), WORDS).value()
        depth, node = 0, value
        while node.get("manager"):
            node, depth = node["manager"], depth + 1
        assert depth <= 8


@pytest.mark.parametrize(
    "pattern",
    [r"^[A-Z]{3}-\d{2,4}$", r"(cat|dog)s?", r"^[^aeiou\s]+$", r"\w+@\w+\.(com|org)", r"a.b"],
)
def test_patterns_are_matched(pattern: str):
    for seed in range(50):
        assert re.search(pattern, matching(pattern, random.Random(seed)))


def test_what_cannot_be_met_is_refused():
    with pytest.raises(Unsupported):
        matching(r"(a)\1", random.Random(0))  # back-references are not modelled
    with pytest.raises(Unsatisfiable):
        ValueGenerator(False, random.Random(0), WORDS).value()
    with pytest.raises(Unsatisfiable):
        ValueGenerator(
            {"type": "integer", "minimum": 3, "maximum": 2}, random.Random(0), WORDS
        ).value()
    with pytest.raises(ApiError) as caught:
        schema_json(
            {"type": "string", "pattern": r"(a)\1"}, random.Random(0), WORDS, owner="function 'f'"
        )
    assert caught.value.status == 400
    assert caught.value.param == "tools"
    assert "function 'f'" in caught.value.message


def test_free_objects_are_objects():
    for seed in range(50):
        value = free_object(random.Random(seed), WORDS)
        assert isinstance(value, dict)
        assert value
        assert json.loads(json.dumps(value)) == value
