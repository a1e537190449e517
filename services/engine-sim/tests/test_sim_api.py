"""The OpenAI-compatible surface: shapes (validated against OpenAI's OpenAPI description),
the real `openai` client streaming and not, determinism, stop strings, limits and errors."""

from __future__ import annotations

import math
from typing import Any

import httpx
import openai
import orjson
import pytest

CHAT = [{"role": "user", "content": "Tell me about prefix caching in two sentences."}]


def sse_events(text: str) -> list[str]:
    """The `data:` payloads of an SSE body; fails on anything else."""
    events = [block for block in text.split("\n\n") if block]
    payloads = []
    for event in events:
        assert event.startswith("data: "), event
        payloads.append(event[len("data: ") :])
    return payloads


async def raw_stream(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> list[str]:
    async with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return sse_events((await response.aread()).decode())


async def test_chat_completion_unary(start_sim, openai_schemas):
    async with start_sim() as sim, sim.openai() as client, sim.http() as http:
        answer = await client.chat.completions.create(
            model=sim.model, messages=CHAT, max_tokens=12, seed=7
        )
        assert answer.object == "chat.completion"
        assert answer.id.startswith("chatcmpl-")
        assert answer.model == sim.model
        assert answer.system_fingerprint
        choice = answer.choices[0]
        assert choice.finish_reason == "length"
        assert choice.message.role == "assistant"
        assert choice.message.content
        assert answer.usage is not None
        assert answer.usage.completion_tokens == 12
        assert answer.usage.prompt_tokens > 0
        assert answer.usage.total_tokens == answer.usage.prompt_tokens + 12
        assert answer.usage.prompt_tokens_details is not None
        assert answer.usage.prompt_tokens_details.cached_tokens == 0

        raw = await http.post(
            "/v1/chat/completions",
            json={"model": sim.model, "messages": CHAT, "max_tokens": 12, "seed": 7},
        )
        body = raw.json()
        openai_schemas.validate("CreateChatCompletionResponse", body)
        assert body["choices"][0]["message"]["content"] == choice.message.content


async def test_chat_stream_with_usage(start_sim, openai_schemas):
    async with start_sim() as sim, sim.openai() as client, sim.http() as http:
        unary = await client.chat.completions.create(
            model=sim.model, messages=CHAT, max_tokens=10, seed=3
        )
        stream = await client.chat.completions.create(
            model=sim.model,
            messages=CHAT,
            max_tokens=10,
            seed=3,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        *content_chunks, usage_chunk = chunks
        assert usage_chunk.choices == []
        assert usage_chunk.usage is not None
        assert usage_chunk.usage.completion_tokens == 10
        assert unary.usage is not None
        assert usage_chunk.usage.prompt_tokens == unary.usage.prompt_tokens
        assert content_chunks[0].choices[0].delta.role == "assistant"
        text = "".join(c.choices[0].delta.content or "" for c in content_chunks)
        assert text == unary.choices[0].message.content
        assert [c.choices[0].finish_reason for c in content_chunks[:-1]] == [None] * (
            len(content_chunks) - 1
        )
        assert content_chunks[-1].choices[0].finish_reason == "length"
        assert len({c.id for c in chunks}) == 1

        payloads = await raw_stream(
            http,
            "/v1/chat/completions",
            {
                "model": sim.model,
                "messages": CHAT,
                "max_tokens": 10,
                "seed": 3,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        )
        assert payloads[-1] == "[DONE]"
        documents = [orjson.loads(p) for p in payloads[:-1]]
        for document in documents:
            openai_schemas.validate("CreateChatCompletionStreamResponse", document)
        assert all(d["usage"] is None for d in documents[:-1])
        assert documents[-1]["choices"] == []
        # The same prompt ran twice before: its full blocks come from the prefix cache.
        assert documents[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] > 0


async def test_stream_without_usage_option_has_no_usage_chunk(start_sim):
    async with start_sim() as sim, sim.http() as http:
        payloads = await raw_stream(
            http,
            "/v1/chat/completions",
            {"messages": CHAT, "max_tokens": 4, "stream": True, "ignore_eos": True},
        )
        documents = [orjson.loads(p) for p in payloads[:-1]]
        assert payloads[-1] == "[DONE]"
        assert all(d["choices"] for d in documents)
        assert all("usage" not in d for d in documents)
        # role chunk + one chunk per token
        assert len(documents) == 1 + 4


async def test_completions_unary_and_stream(start_sim, openai_schemas):
    async with start_sim() as sim, sim.openai() as client, sim.http() as http:
        unary = await client.completions.create(
            model=sim.model, prompt="The capital of France is", max_tokens=6, seed=11
        )
        assert unary.object == "text_completion"
        assert unary.id.startswith("cmpl-")
        assert unary.choices[0].finish_reason == "length"
        assert unary.usage is not None
        assert unary.usage.completion_tokens == 6
        body = {"prompt": "The capital of France is", "max_tokens": 6, "seed": 11}
        raw = (await http.post("/v1/completions", json=body)).json()
        openai_schemas.validate("CreateCompletionResponse", raw)
        assert raw["choices"][0]["text"] == unary.choices[0].text

        stream = await client.completions.create(
            model=sim.model,
            prompt="The capital of France is",
            max_tokens=6,
            seed=11,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == 6
        assert "".join(c.choices[0].text for c in chunks if c.choices) == unary.choices[0].text

        payloads = await raw_stream(http, "/v1/completions", {**body, "stream": True})
        assert payloads[-1] == "[DONE]"
        for payload in payloads[:-1]:
            openai_schemas.validate("CompletionStreamChunk", orjson.loads(payload))


async def test_completions_default_to_sixteen_tokens_and_accept_token_ids(start_sim):
    async with start_sim(output_len_min=64, output_len_max=64) as sim, sim.http() as http:
        body = (await http.post("/v1/completions", json={"prompt": [1, 2, 3, 4, 5]})).json()
        assert body["usage"]["prompt_tokens"] == 5
        assert body["usage"]["completion_tokens"] == 16
        assert body["choices"][0]["finish_reason"] == "length"


async def test_embeddings(start_sim, openai_schemas):
    async with start_sim(embedding_dim=64) as sim, sim.openai() as client, sim.http() as http:
        # The openai client asks for base64 and decodes it itself.
        result = await client.embeddings.create(model=sim.model, input=["alpha", "beta", "alpha"])
        vectors = [item.embedding for item in result.data]
        assert [len(v) for v in vectors] == [64, 64, 64]
        assert vectors[0] == pytest.approx(vectors[2], abs=1e-6)
        assert vectors[0] != pytest.approx(vectors[1], abs=1e-3)
        assert math.sqrt(sum(x * x for x in vectors[1])) == pytest.approx(1.0, abs=1e-4)
        assert result.usage.prompt_tokens == 2 + 1 + 2  # ceil(bytes / 4) each

        raw = await http.post(
            "/v1/embeddings",
            json={"input": "alpha", "encoding_format": "float", "dimensions": 16},
        )
        body = raw.json()
        openai_schemas.validate("CreateEmbeddingResponse", body)
        assert len(body["data"][0]["embedding"]) == 16
        again = (await http.post("/v1/embeddings", json={"input": "alpha"})).json()
        assert again["data"][0]["embedding"] == pytest.approx(vectors[0], abs=1e-6)


async def test_models_health_version(start_sim, openai_schemas):
    async with start_sim(served_model_name=["alias-a", "alias-b"]) as sim:
        async with sim.openai() as client:
            listed = await client.models.list()
            assert [m.id for m in listed.data] == ["alias-a", "alias-b"]
        async with sim.http() as http:
            body = (await http.get("/v1/models")).json()
            openai_schemas.validate("ListModelsResponse", body)
            card = body["data"][0]
            assert card["owned_by"] == "vllm"
            assert card["root"] == "sim-model"
            assert card["max_model_len"] == 8192
            assert card["arks_sim"]["tokenizer"] == "approximate"
            health = await http.get("/health")
            assert (health.status_code, health.content) == (200, b"")
            assert (await http.get("/version")).json()["version"]
            # either alias is accepted
            ok = await http.post("/v1/completions", json={"model": "alias-b", "prompt": "x"})
            assert ok.status_code == 200
            assert ok.json()["model"] == "alias-b"


async def test_seed_makes_output_deterministic(start_sim):
    async with start_sim() as sim, sim.openai() as client:

        async def text(**kwargs: Any) -> str:
            answer = await client.chat.completions.create(
                model=sim.model, messages=CHAT, **{"max_tokens": 20, **kwargs}
            )
            return answer.choices[0].message.content or ""

        first = await text(seed=42)
        assert await text(seed=42) == first
        assert await text(seed=43) != first
        # A smaller limit gives a prefix of the same answer, as with a real sampler.
        assert first.startswith(await text(seed=42, max_tokens=5))
        # Greedy decoding without a seed is deterministic too.
        assert await text(temperature=0) == await text(temperature=0)


async def test_stop_strings(start_sim):
    async with start_sim() as sim, sim.openai() as client:
        base = await client.chat.completions.create(
            model=sim.model, messages=CHAT, max_tokens=30, seed=5
        )
        full = base.choices[0].message.content or ""
        words = full.split()
        stop_word = words[len(words) // 2]
        cut = full.index(stop_word)
        stopped = await client.chat.completions.create(
            model=sim.model, messages=CHAT, max_tokens=30, seed=5, stop=[stop_word, "zzz"]
        )
        assert stopped.choices[0].finish_reason == "stop"
        assert stopped.choices[0].message.content == full[:cut]
        assert stopped.usage is not None
        assert stopped.usage.completion_tokens < 30
        stream = await client.chat.completions.create(
            model=sim.model, messages=CHAT, max_tokens=30, seed=5, stop=stop_word, stream=True
        )
        chunks = [chunk async for chunk in stream]
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == full[:cut]
        assert chunks[-1].choices[0].finish_reason == "stop"


async def test_natural_end_and_token_limits(start_sim):
    async with start_sim(output_len_min=5, output_len_max=5) as sim, sim.openai() as client:
        natural = await client.chat.completions.create(model=sim.model, messages=CHAT)
        assert natural.choices[0].finish_reason == "stop"
        assert natural.usage is not None
        assert natural.usage.completion_tokens == 5
        capped = await client.chat.completions.create(
            model=sim.model, messages=CHAT, max_tokens=50, max_completion_tokens=3
        )
        assert capped.choices[0].finish_reason == "length"
        assert capped.usage is not None
        assert capped.usage.completion_tokens == 3
        forced = await client.chat.completions.create(
            model=sim.model, messages=CHAT, max_tokens=9, extra_body={"ignore_eos": True}
        )
        assert forced.choices[0].finish_reason == "length"
        assert forced.usage is not None
        assert forced.usage.completion_tokens == 9


BAD_REQUESTS: list[tuple[str, Any, str | None]] = [
    ("/v1/chat/completions", b"{not json", None),
    ("/v1/chat/completions", b"[1, 2]", None),
    ("/v1/chat/completions", {"messages": []}, "messages"),
    ("/v1/chat/completions", {"messages": [{"content": "x"}]}, "messages"),
    ("/v1/chat/completions", {"messages": CHAT, "max_tokens": 0}, "max_tokens"),
    ("/v1/chat/completions", {"messages": CHAT, "max_tokens": "9"}, "max_tokens"),
    ("/v1/chat/completions", {"messages": CHAT, "temperature": -1}, "temperature"),
    ("/v1/chat/completions", {"messages": CHAT, "n": 0}, "n"),
    ("/v1/chat/completions", {"messages": CHAT, "n": 129}, "n"),
    ("/v1/completions", {"prompt": "x", "n": "2"}, "n"),
    (
        "/v1/chat/completions",
        {"messages": CHAT, "logprobs": True, "top_logprobs": 21},
        "top_logprobs",
    ),
    (
        "/v1/chat/completions",
        {"messages": CHAT, "logprobs": True, "top_logprobs": -1},
        "top_logprobs",
    ),
    ("/v1/chat/completions", {"messages": CHAT, "top_logprobs": 2}, "top_logprobs"),
    ("/v1/chat/completions", {"messages": CHAT, "logprobs": "yes"}, "logprobs"),
    ("/v1/completions", {"prompt": "x", "logprobs": 21}, "logprobs"),
    ("/v1/completions", {"prompt": "x", "logprobs": -1}, "logprobs"),
    ("/v1/completions", {"prompt": "x", "logprobs": True}, "logprobs"),
    ("/v1/completions", {"prompt": "x", "echo": True}, "echo"),
    ("/v1/chat/completions", {"messages": CHAT, "stop": 3}, "stop"),
    (
        "/v1/chat/completions",
        {"messages": CHAT, "stream_options": {"include_usage": True}},
        "stream_options",
    ),
    ("/v1/chat/completions", {"messages": CHAT, "max_tokens": 100_000}, "max_tokens"),
    ("/v1/completions", {"prompt": "x" * 40_000}, "prompt"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x" * 40_000}]}, "messages"),
    ("/v1/completions", {"max_tokens": 3}, "prompt"),
    ("/v1/completions", {"prompt": ["a", "b"]}, "prompt"),
    ("/v1/embeddings", {"input": []}, "input"),
    ("/v1/embeddings", {"input": "x", "dimensions": 100_000}, "dimensions"),
]


async def test_bad_requests_get_vllm_shaped_400(start_sim, openai_schemas, subtests):
    async with start_sim() as sim, sim.http() as http:
        for path, body, param in BAD_REQUESTS:
            with subtests.test(path=path, body=body):
                content = body if isinstance(body, bytes) else orjson.dumps(body)
                response = await http.post(path, content=content)
                assert response.status_code == 400
                error = response.json()
                openai_schemas.validate("VllmErrorResponse", error)
                assert error["error"]["type"] == "BadRequestError"
                assert error["error"]["code"] == 400
                assert error["error"]["param"] == param


async def test_unknown_model_is_404(start_sim, openai_schemas):
    async with start_sim() as sim, sim.openai() as client, sim.http() as http:
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(model="nope", messages=CHAT)
        assert "The model `nope` does not exist." in str(caught.value)
        response = await http.post("/v1/embeddings", json={"model": "nope", "input": "x"})
        assert response.status_code == 404
        openai_schemas.validate("VllmErrorResponse", response.json())
        assert response.json()["error"] == {
            "message": "The model `nope` does not exist.",
            "type": "NotFoundError",
            "param": "model",
            "code": 404,
        }
        assert (await http.get("/v2/anything")).status_code == 404
        assert (await http.get("/v1/chat/completions")).status_code == 405


async def test_api_key_and_request_id(start_sim):
    async with start_sim(api_key="s3cret") as sim, sim.http() as http:
        body = {"messages": CHAT, "max_tokens": 2}
        assert (await http.post("/v1/chat/completions", json=body)).status_code == 401
        wrong = {"authorization": "Bearer nope"}
        response = await http.post("/v1/chat/completions", json=body, headers=wrong)
        assert response.status_code == 401
        headers = {"authorization": "Bearer s3cret", "x-request-id": "abc123"}
        response = await http.post("/v1/chat/completions", json=body, headers=headers)
        assert response.status_code == 200
        assert response.json()["id"] == "chatcmpl-abc123"
        odd = {**headers, "x-request-id": 'q"uo\\te'}
        async with http.stream(
            "POST", "/v1/chat/completions", json={**body, "stream": True}, headers=odd
        ) as stream:
            payloads = sse_events((await stream.aread()).decode())
        assert orjson.loads(payloads[0])["id"] == 'chatcmpl-q"uo\\te'
        assert (await http.get("/health")).status_code == 200  # not behind the key
