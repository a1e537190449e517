"""Validating the request fields that constrain an answer's structure: `tools`,
`tool_choice`, `parallel_tool_calls`, `response_format`, and the tool calls of earlier
assistant turns.

The rules are vLLM's (which follows OpenAI's): function tools only; `tool_choice`
defaults to `auto` when tools are given; `auto` is refused unless the server was started
with `--enable-auto-tool-choice` (and `--tool-call-parser`); a named choice must name a
given tool; `required` with an empty tool list behaves as `none`; `tool_choice` without
tools is refused. Every JSON Schema (tool parameters, `json_schema.schema`) is checked
against its metaschema, as OpenAI does, so a broken schema is a 400 naming the tool or
format rather than an answer that cannot validate. Each problem raises `ApiError` 400
with the offending `param`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from arks_engine_sim.errors import ApiError, bad_request

ChoiceMode = Literal["none", "auto", "required", "named"]
FormatKind = Literal["json_object", "json_schema"]
AUTO_NEEDS_FLAGS = (
    '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
)
_NAMED_USAGE = 'Correct usage: `{"type": "function", "function": {"name": "my_function"}}`'


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    parameters: Any  # a JSON Schema: object or boolean ({} when the tool declares none)


@dataclass(frozen=True, slots=True)
class ToolUse:
    tools: tuple[Tool, ...]
    mode: ChoiceMode
    named: str | None
    parallel: bool
    prompt: str  # the tool definitions as the chat template shows them to the model


@dataclass(frozen=True, slots=True)
class OutputFormat:
    kind: FormatKind
    schema: Any  # None for json_object (any object)


def check_schema(schema: Any, param: str, owner: str) -> None:
    if isinstance(schema, bool):
        return  # `true` admits anything, `false` nothing: both are schemas
    if not isinstance(schema, dict):
        raise bad_request(f"Invalid schema for {owner}: a JSON Schema must be an object.", param)
    try:
        validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        raise bad_request(f"Invalid schema for {owner}: {exc.message}", param) from None


def _tool(raw: object, index: int) -> Tool:
    where = f"tools[{index}]"
    if not isinstance(raw, dict):
        raise bad_request(f"`{where}` must be an object.", where)
    if raw.get("type", "function") != "function":
        raise bad_request(
            f"Invalid value for `{where}.type`: {raw.get('type')!r}; only `function` tools "
            "are supported.",
            f"{where}.type",
        )
    function = raw.get("function")
    if not isinstance(function, dict):
        raise bad_request(f"Missing required parameter: '{where}.function'.", f"{where}.function")
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise bad_request(
            f"`{where}.function.name` must be a non-empty string.", f"{where}.function.name"
        )
    if function.get("description") is not None and not isinstance(function["description"], str):
        raise bad_request(
            f"`{where}.function.description` must be a string.", f"{where}.function.description"
        )
    if function.get("strict") is not None and not isinstance(function["strict"], bool):
        raise bad_request(
            f"`{where}.function.strict` must be a boolean.", f"{where}.function.strict"
        )
    parameters = function.get("parameters")
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    check_schema(parameters, f"{where}.function.parameters", f"function '{name}'")
    return Tool(name, parameters)


def _named_choice(choice: dict[str, Any], tools: tuple[Tool, ...]) -> str:
    function = choice.get("function")
    if choice.get("type", "function") != "function" or not isinstance(function, dict):
        raise bad_request(
            f"Invalid value for `function` in `tool_choice`! {_NAMED_USAGE}", "tool_choice"
        )
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise bad_request(
            f"Expected field `name` in `function` in `tool_choice`! {_NAMED_USAGE}", "tool_choice"
        )
    if all(tool.name != name for tool in tools):
        raise bad_request(
            "The tool specified in `tool_choice` does not match any of the specified `tools`",
            "tool_choice",
        )
    return name


def parse_tool_use(body: dict[str, Any], *, auto_enabled: bool) -> ToolUse | None:
    raw_tools = body.get("tools")
    choice = body.get("tool_choice")
    if raw_tools is None:
        if choice is not None and choice != "none":
            raise bad_request("When using `tool_choice`, `tools` must be set.", "tool_choice")
        return None
    if not isinstance(raw_tools, list):
        raise bad_request("`tools` must be a list of tool definitions.", "tools")
    tools = tuple(_tool(raw, index) for index, raw in enumerate(raw_tools))
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise bad_request("`parallel_tool_calls` must be a boolean.", "parallel_tool_calls")
    named: str | None = None
    mode: ChoiceMode
    if choice is None:
        mode = "auto" if tools else "none"
    elif isinstance(choice, dict):
        mode, named = "named", _named_choice(choice, tools)
    elif choice in ("none", "auto", "required"):
        mode = choice
    else:
        raise bad_request(
            f'Invalid value for `tool_choice`: {choice!r}! Only named tools, "none", '
            '"auto" or "required" are supported.',
            "tool_choice",
        )
    if mode == "required" and not tools:
        mode = "none"  # OpenAI's behaviour, which vLLM copies
    if mode == "auto" and not auto_enabled:
        raise ApiError(400, AUTO_NEEDS_FLAGS)
    prompt = (
        "# Tools\n\n<tools>\n"
        + "\n".join(orjson.dumps(raw).decode() for raw in raw_tools)
        + "\n</tools>"
    )
    return ToolUse(tools, mode, named, parallel is not False, prompt)


def parse_response_format(body: dict[str, Any]) -> OutputFormat | None:
    raw = body.get("response_format")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise bad_request("`response_format` must be an object.", "response_format")
    kind = raw.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return OutputFormat("json_object", None)
    if kind != "json_schema":
        raise bad_request(
            f"Invalid value for `response_format.type`: {kind!r}; expected 'text', "
            "'json_object' or 'json_schema'.",
            "response_format.type",
        )
    spec = raw.get("json_schema")
    if not isinstance(spec, dict):
        raise bad_request(
            "Missing required parameter: 'response_format.json_schema'.",
            "response_format.json_schema",
        )
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise bad_request(
            "Missing required parameter: 'response_format.json_schema.name'.",
            "response_format.json_schema.name",
        )
    if spec.get("strict") is not None and not isinstance(spec["strict"], bool):
        raise bad_request(
            "`response_format.json_schema.strict` must be a boolean.",
            "response_format.json_schema.strict",
        )
    schema = spec.get("schema")
    if schema is None:
        return OutputFormat("json_object", None)
    check_schema(schema, "response_format.json_schema.schema", f"response_format '{name}'")
    return OutputFormat("json_schema", schema)


def earlier_tool_calls(message: dict[str, Any], index: int) -> str:
    """An assistant turn's `tool_calls`, as the chat template writes them (Hermes style)."""
    calls = message.get("tool_calls")
    if calls is None:
        return ""
    where = f"messages[{index}].tool_calls"
    if not isinstance(calls, list):
        raise bad_request(f"`{where}` must be a list.", where)
    rendered: list[str] = []
    for position, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
            or not isinstance(function.get("arguments"), str)
        ):
            raise bad_request(
                f"`{where}[{position}]` must have `function` with string `name` and `arguments`.",
                f"{where}[{position}]",
            )
        payload = orjson.dumps({"name": function["name"], "arguments": function["arguments"]})
        rendered.append(f"<tool_call>\n{payload.decode()}\n</tool_call>")
    return "\n".join(rendered)
