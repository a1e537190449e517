"""What a structured answer says, decided when the request arrives: tool calls for
`tools`, JSON for `response_format`, each as the token pieces the simulated model emits.

- Tool calls: always under `tool_choice: required` or a named function (that one);
  under `auto` with probability `tool_call_rate` when the last turn is not a tool
  result (after one, the model answers in text, so agent loops end); never under
  `none`. With `parallel_tool_calls` (the default) a quarter of the answers call two
  tools. Arguments are JSON generated from the tool's `parameters` schema.
- `json_object`: any JSON object; `json_schema`: JSON generated from the schema.

Every generated value is validated with jsonschema (a value that fails is generated
again with the next draws); a schema that still cannot be met after `_ATTEMPTS` answers
400 naming the tool or format, before anything is scheduled. The decisions and values
come from the answer's seeded RNG, so a seeded request gives the same structure.
`completion_tokens` counts the pieces: a tool call's are its arguments' tokens (the
function name is not generated text, as with vLLM's named tool choice).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for

from arks_engine_sim.errors import bad_request
from arks_engine_sim.schema_scalars import Unsatisfiable
from arks_engine_sim.schema_values import ValueGenerator, free_object
from arks_engine_sim.structured_params import OutputFormat, Tool, ToolUse
from arks_engine_sim.tokenizing import TokenCounter

_ATTEMPTS = 12
_PARALLEL_RATE = 0.25


@dataclass(frozen=True, slots=True)
class PlannedCall:
    id: str
    name: str
    start: int  # index of the call's first token in the answer
    end: int  # one past its last token


@dataclass(frozen=True, slots=True)
class Structure:
    pieces: list[str]
    calls: list[PlannedCall]
    finish_reason: Literal["stop", "tool_calls"]


def schema_json(schema: Any, rng: random.Random, words: Sequence[str], *, owner: str) -> str:
    validator = validator_for(schema, default=Draft202012Validator)(schema)
    problem = "no value generated"
    for _ in range(_ATTEMPTS):
        try:
            value = ValueGenerator(schema, rng, words).value()
        except Unsatisfiable as exc:
            problem = str(exc)
            continue
        error = best_match(validator.iter_errors(value))
        if error is None:
            return json.dumps(value, ensure_ascii=False)
        problem = error.message
    raise bad_request(
        f"The simulator cannot generate JSON that satisfies the schema of {owner}: {problem}",
        "response_format" if owner.startswith("response_format") else "tools",
    )


def _chosen_tools(use: ToolUse, rng: random.Random, rate: float, after_result: bool) -> list[Tool]:
    if use.mode == "none" or not use.tools:
        return []
    if use.mode == "named":
        return [tool for tool in use.tools if tool.name == use.named][:1]
    if use.mode == "auto" and (after_result or rng.random() >= rate):
        return []
    count = 2 if use.parallel and rng.random() < _PARALLEL_RATE else 1
    return [rng.choice(use.tools) for _ in range(count)]


def plan_structure(
    use: ToolUse | None,
    output_format: OutputFormat | None,
    *,
    rng: random.Random,
    words: Sequence[str],
    counter: TokenCounter,
    tool_call_rate: float,
    after_tool_result: bool,
) -> Structure | None:
    """The structured answer of one choice, or None for free text."""
    tools = _chosen_tools(use, rng, tool_call_rate, after_tool_result) if use else []
    if tools:
        pieces: list[str] = []
        calls: list[PlannedCall] = []
        for tool in tools:
            arguments = schema_json(tool.parameters, rng, words, owner=f"function '{tool.name}'")
            start = len(pieces)
            pieces.extend(counter.pieces(arguments))
            call_id = f"chatcmpl-tool-{uuid.uuid4().hex}"
            calls.append(PlannedCall(call_id, tool.name, start, len(pieces)))
        named = use is not None and use.mode == "named"
        # OpenAI (and vLLM) finish a named tool choice with "stop", the others "tool_calls".
        return Structure(pieces, calls, "stop" if named else "tool_calls")
    if output_format is None:
        return None
    if output_format.kind == "json_object":
        text = json.dumps(free_object(rng, words), ensure_ascii=False)
    else:
        text = schema_json(output_format.schema, rng, words, owner="response_format")
    return Structure(counter.pieces(text), [], "stop")
