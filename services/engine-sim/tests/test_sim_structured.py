"""Tool calls and structured output through a real simulator and the real `openai`
client: an agent loop, tool_choice modes and their validation, vLLM's auto-tool-choice
flags, `response_format` json_object / json_schema (pydantic via `parse`, and schemas
checked with jsonschema), streamed and not."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

import openai
import orjson
import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, Field

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 2, "maxLength": 40},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "hourly": {"type": "boolean"},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
BOOK = {
    "type": "function",
    "function": {
        "name": "book_trip",
        "parameters": {
            "type": "object",
            "properties": {
                "travellers": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 4,
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "age": {"type": "integer", "exclusiveMinimum": 0, "maximum": 120},
                            "email": {"type": "string", "format": "email"},
                        },
                        "required": ["name", "age"],
                    },
                },
                "budget": {"type": "number", "minimum": 100, "maximum": 5000},
                "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
                "class": {"anyOf": [{"type": "string", "enum": ["eco", "biz"]}, {"type": "null"}]},
            },
            "required": ["travellers", "budget", "code", "class"],
        },
    },
}
TOOLS = [WEATHER, BOOK]
PARAMETERS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
ASK = [{"role": "user", "content": "What is the weather in Paris, and book me a trip?"}]
AUTO = {"enable_auto_tool_choice": True, "tool_call_parser": "hermes"}


def assert_valid_call(name: str, arguments: str) -> None:
    Draft202012Validator(PARAMETERS[name]).validate(json.loads(arguments))


def sse_documents(text: str) -> list[dict[str, Any]]:
    payloads = [block.removeprefix("data: ") for block in text.split("\n\n") if block]
    assert payloads[-1] == "[DONE]"
    return [orjson.loads(p) for p in payloads[:-1]]


def collect_tool_calls(chunks: list[Any]) -> dict[int, dict[str, str]]:
    """Tool-call deltas folded as a client does: by index; id, type and name first."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                if delta.index not in calls:
                    assert delta.id is not None
                    assert delta.type == "function"
                    assert delta.function.name
                    calls[delta.index] = {"id": delta.id, "name": delta.function.name, "args": ""}
                else:
                    assert delta.id is None
                    assert delta.function.name is None
                calls[delta.index]["args"] += delta.function.arguments or ""
    return calls


async def test_agent_loop_tool_call_then_tool_result_then_answer(start_sim, openai_schemas):
    async with start_sim(**AUTO, tool_call_rate=1.0) as sim, sim.openai() as client:
        messages: list[Any] = list(ASK)
        first = await client.chat.completions.create(
            model=sim.model, messages=messages, tools=TOOLS, seed=1
        )
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None
        calls = choice.message.tool_calls
        assert calls
        for call in calls:
            assert call.id.startswith("chatcmpl-tool-")
            assert call.type == "function"
            assert_valid_call(call.function.name, call.function.arguments)
        assert first.usage is not None
        assert first.usage.completion_tokens >= len(calls)
        # The agent runs the tools and sends their results back.
        messages.append(choice.message.model_dump(exclude_none=True))
        for call in calls:
            messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"})
        final = await client.chat.completions.create(
            model=sim.model, messages=messages, tools=TOOLS, seed=1, max_tokens=20
        )
        assert final.choices[0].message.tool_calls in (None, [])
        assert final.choices[0].message.content
        assert final.choices[0].finish_reason in ("stop", "length")
        # The tool turn counts in the prompt: it is longer than the first one.
        assert final.usage is not None
        assert final.usage.prompt_tokens > first.usage.prompt_tokens

        stream = await client.chat.completions.create(
            model=sim.model,
            messages=ASK,
            tools=TOOLS,
            seed=1,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        streamed = collect_tool_calls(chunks)
        assert [c["name"] for c in streamed.values()] == [c.function.name for c in calls]
        assert [c["args"] for c in streamed.values()] == [c.function.arguments for c in calls]
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
        assert finishes[-1] == "tool_calls"
        assert set(finishes[:-1]) == {None}
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == first.usage.completion_tokens

    async with start_sim(**AUTO, tool_call_rate=1.0) as sim, sim.http() as http:
        body = {"messages": ASK, "tools": TOOLS, "seed": 1}
        openai_schemas.validate(
            "CreateChatCompletionResponse",
            (await http.post("/v1/chat/completions", json=body)).json(),
        )
        raw = await http.post("/v1/chat/completions", json={**body, "stream": True})
        for document in sse_documents(raw.text):
            openai_schemas.validate("CreateChatCompletionStreamResponse", document)


async def test_tool_choice_modes(start_sim):
    async with start_sim(**AUTO, tool_call_rate=0.0) as sim, sim.openai() as client:

        async def ask(choice: Any, **extra: Any) -> Any:
            answer = await client.chat.completions.create(
                model=sim.model, messages=ASK, tools=TOOLS, tool_choice=choice, **extra
            )
            return answer.choices[0]

        for seed in range(5):
            named = await ask({"type": "function", "function": {"name": "book_trip"}}, seed=seed)
            # OpenAI and vLLM finish a named tool choice with "stop".
            assert named.finish_reason == "stop"
            assert [c.function.name for c in named.message.tool_calls] == ["book_trip"]
            assert_valid_call("book_trip", named.message.tool_calls[0].function.arguments)
            required = await ask("required", seed=seed)
            assert required.finish_reason == "tool_calls"
            for call in required.message.tool_calls:
                assert_valid_call(call.function.name, call.function.arguments)
            single = await ask("required", seed=seed, parallel_tool_calls=False)
            assert len(single.message.tool_calls) == 1
            for choice in ("none", "auto"):  # the rate is 0: auto answers in text
                text = await ask(choice, seed=seed, max_tokens=5)
                assert not text.message.tool_calls
                assert text.message.content
        # Same seed, same call (ids are fresh, as vLLM's).
        one = await ask("required", seed=3)
        two = await ask("required", seed=3)
        assert [c.function for c in one.message.tool_calls] == [
            c.function for c in two.message.tool_calls
        ]
        assert one.message.tool_calls[0].id != two.message.tool_calls[0].id
        # A small max_tokens cuts the arguments, and says so.
        cut = await ask({"type": "function", "function": {"name": "book_trip"}}, max_tokens=2)
        assert cut.finish_reason == "length"


async def test_auto_rate_is_seeded_and_follows_the_setting(start_sim):
    async with start_sim(**AUTO) as sim, sim.openai() as client:

        async def calls(seed: int) -> list[str]:
            answer = await client.chat.completions.create(
                model=sim.model, messages=ASK, tools=TOOLS, seed=seed, max_tokens=8
            )
            return [c.function.name for c in answer.choices[0].message.tool_calls or []]

        decisions = [bool(await calls(seed)) for seed in range(40)]
        assert 8 <= sum(decisions) <= 32  # default rate 0.5 (a fixed outcome: seeded)
        assert [bool(await calls(seed)) for seed in range(10)] == decisions[:10]


async def test_auto_needs_vllm_flags_and_tool_choice_is_validated(start_sim, openai_schemas):
    async with start_sim() as sim, sim.openai() as client, sim.http() as http:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model=sim.model, messages=ASK, tools=TOOLS)
        assert "--enable-auto-tool-choice and --tool-call-parser" in str(caught.value)
        # `none`, `required` and named choices need no flags, as in vLLM.
        answer = await client.chat.completions.create(
            model=sim.model, messages=ASK, tools=TOOLS, tool_choice="required"
        )
        assert answer.choices[0].message.tool_calls
        for body, param in BAD_TOOL_REQUESTS:
            response = await http.post("/v1/chat/completions", json={"messages": ASK, **body})
            assert response.status_code == 400, body
            error = response.json()
            openai_schemas.validate("VllmErrorResponse", error)
            assert error["error"]["param"] == param, (body, error)


BAD_TOOL_REQUESTS: list[tuple[dict[str, Any], str | None]] = [
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
    (
        {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        "tool_choice",
    ),
    ({"tools": TOOLS, "tool_choice": {"type": "function"}}, "tool_choice"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {}}}, "tool_choice"),
    ({"tools": "get_weather", "tool_choice": "required"}, "tools"),
    (
        {"tools": [{"type": "custom", "custom": {"name": "x"}}], "tool_choice": "required"},
        "tools[0].type",
    ),
    ({"tools": [{"type": "function"}], "tool_choice": "required"}, "tools[0].function"),
    ({"tools": [{"function": {"name": ""}}], "tool_choice": "required"}, "tools[0].function.name"),
    (
        {
            "tools": [{"function": {"name": "f", "parameters": {"type": "nope"}}}],
            "tool_choice": "none",
        },
        "tools[0].function.parameters",
    ),
    (
        {
            "tools": [
                {
                    "function": {
                        "name": "f",
                        "parameters": {"type": "string", "minLength": 5, "maxLength": 2},
                    }
                }
            ],
            "tool_choice": "required",
        },
        "tools",
    ),
    (
        {"tools": TOOLS, "tool_choice": "required", "parallel_tool_calls": "yes"},
        "parallel_tool_calls",
    ),
    ({"tools": TOOLS}, None),  # auto without --enable-auto-tool-choice
    (
        {"messages": [*ASK, {"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}]},
        "messages[1].tool_calls[0]",
    ),
    ({"messages": [*ASK, {"role": "assistant", "tool_calls": "f()"}]}, "messages[1].tool_calls"),
    ({"response_format": "json"}, "response_format"),
    ({"response_format": {"type": "xml"}}, "response_format.type"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
        "response_format.json_schema.name",
    ),
    (
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": 5}},
            }
        },
        "response_format.json_schema.schema",
    ),
    (
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"enum": []}},
            }
        },
        "response_format",
    ),
    (
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "x",
                    "schema": {"type": "integer", "minimum": 5, "maximum": 2},
                },
            }
        },
        "response_format",
    ),
]


class Colour(StrEnum):
    RED = "red"
    GREEN = "green"


class Part(BaseModel):
    label: str = Field(min_length=1, max_length=30)
    weight: float = Field(ge=0, le=10)
    colour: Colour


class Inventory(BaseModel):
    owner: str
    count: int = Field(ge=1, le=100)
    parts: list[Part]
    note: str | None
    tags: list[str]


async def test_structured_output_parses_into_pydantic(start_sim):
    async with start_sim() as sim, sim.openai() as client:
        for seed in range(5):
            completion = await client.chat.completions.parse(
                model=sim.model,
                messages=[{"role": "user", "content": "List the inventory."}],
                response_format=Inventory,
                seed=seed,
            )
            parsed = completion.choices[0].message.parsed
            assert isinstance(parsed, Inventory)
            assert 1 <= parsed.count <= 100
        beta = await client.beta.chat.completions.parse(
            model=sim.model,
            messages=[{"role": "user", "content": "One part."}],
            response_format=Part,
        )
        assert isinstance(beta.choices[0].message.parsed, Part)
        # Strict function tools parse into their models too.
        tool = openai.pydantic_function_tool(Inventory, name="save_inventory")
        called = await client.chat.completions.parse(
            model=sim.model,
            messages=[{"role": "user", "content": "Save it."}],
            tools=[tool],
            tool_choice="required",
        )
        arguments = called.choices[0].message.tool_calls[0].function.parsed_arguments
        assert isinstance(arguments, Inventory)


SCHEMAS: list[dict[str, Any]] = [
    BOOK["function"]["parameters"],
    {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "value": {"type": "integer", "multipleOf": 5, "minimum": -50, "maximum": 50},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
                "required": ["value", "children"],
                "additionalProperties": False,
            }
        },
        "$ref": "#/$defs/node",
    },
    {
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date-time"},
            "id": {"type": "string", "format": "uuid"},
            "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "pair": {
                "type": "array",
                "prefixItems": [{"type": "string"}, {"type": "integer"}],
                "items": False,
            },
            "unique": {
                "type": "array",
                "items": {"enum": [1, 2, 3]},
                "uniqueItems": True,
                "minItems": 2,
            },
            "either": {"oneOf": [{"type": "string", "maxLength": 3}, {"type": "boolean"}]},
            "fixed": {"const": "v1"},
            "extra": {
                "type": "object",
                "minProperties": 2,
                "additionalProperties": {"type": "integer"},
            },
        },
        "required": ["when", "id", "ratio", "pair", "unique", "either", "fixed", "extra"],
    },
    {"type": "array", "items": {"type": "string", "pattern": "^(ab|cd)+x?$"}, "minItems": 1},
]


async def test_json_schema_answers_validate_streamed_and_not(start_sim, openai_schemas):
    async with start_sim() as sim, sim.http() as http:
        for index, schema in enumerate(SCHEMAS):
            validator = Draft202012Validator(schema)
            fmt = {"type": "json_schema", "json_schema": {"name": f"s{index}", "schema": schema}}
            for seed in range(6):
                body = {"messages": ASK, "response_format": fmt, "seed": seed}
                answer = (await http.post("/v1/chat/completions", json=body)).json()
                openai_schemas.validate("CreateChatCompletionResponse", answer)
                content = answer["choices"][0]["message"]["content"]
                validator.validate(json.loads(content))
                assert answer["choices"][0]["finish_reason"] == "stop"
                streamed = await http.post("/v1/chat/completions", json={**body, "stream": True})
                documents = sse_documents(streamed.text)
                text = "".join(d["choices"][0]["delta"].get("content") or "" for d in documents)
                assert text == content
                # One chunk per token (plus the role chunk), as for text.
                assert len(documents) == answer["usage"]["completion_tokens"] + 1
            # The legacy completions API takes response_format too (vLLM does).
            plain = await http.post(
                "/v1/completions",
                json={"prompt": "JSON:", "response_format": fmt, "max_tokens": 2000},
            )
            validator.validate(json.loads(plain.json()["choices"][0]["text"]))


async def test_json_object_answers_are_objects(start_sim):
    async with start_sim() as sim, sim.openai() as client:
        for seed in range(5):
            answer = await client.chat.completions.create(
                model=sim.model,
                messages=ASK,
                response_format={"type": "json_object"},
                seed=seed,
            )
            assert isinstance(json.loads(answer.choices[0].message.content or ""), dict)
            stream = await client.chat.completions.create(
                model=sim.model,
                messages=ASK,
                response_format={"type": "json_object"},
                seed=seed,
                stream=True,
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream])
            assert text == answer.choices[0].message.content


async def test_structured_tokens_are_the_tokenizers_own(start_sim, tiny_model):
    """With a tokenizer.json, a JSON answer is emitted token by token as that tokenizer
    splits it, so completion_tokens re-counts exactly."""
    model_dir, tokenizer = tiny_model
    schema = BOOK["function"]["parameters"]
    fmt = {"type": "json_schema", "json_schema": {"name": "trip", "schema": schema}}
    async with start_sim(model=str(model_dir)) as sim, sim.http() as http:
        for seed in range(3):
            body = {"messages": ASK, "response_format": fmt, "seed": seed, "logprobs": True}
            answer = (await http.post("/v1/chat/completions", json=body)).json()
            content = answer["choices"][0]["message"]["content"]
            Draft202012Validator(schema).validate(json.loads(content))
            expected = len(tokenizer.encode(content, add_special_tokens=False).ids)
            assert answer["usage"]["completion_tokens"] == expected
            pieces = [e["token"] for e in answer["choices"][0]["logprobs"]["content"]]
            assert len(pieces) == expected
            assert "".join(pieces) == content
