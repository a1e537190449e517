"""`n` > 1 and logprobs through a real simulator and the real `openai` client: choice
indexes and seeds, usage and metrics summed over choices, the n sequences sharing the
prompt's KV blocks, and the OpenAI logprob shapes, streamed and not."""

from __future__ import annotations

import asyncio
import json
import math
from collections import defaultdict
from typing import Any

import httpx
import orjson

CHAT = [{"role": "user", "content": "Name three rivers and say something about each."}]


def sse_documents(text: str) -> list[dict[str, Any]]:
    payloads = [block.removeprefix("data: ") for block in text.split("\n\n") if block]
    assert payloads[-1] == "[DONE]"
    return [orjson.loads(p) for p in payloads[:-1]]


async def test_n_choices_chat_unary_and_stream(start_sim, openai_schemas):
    async with start_sim() as sim, sim.openai() as client, sim.http() as http:
        before = await sim.metrics()
        answer = await client.chat.completions.create(
            model=sim.model, messages=CHAT, n=3, seed=10, max_tokens=12
        )
        assert [c.index for c in answer.choices] == [0, 1, 2]
        texts = [c.message.content for c in answer.choices]
        assert len(set(texts)) == 3
        # Choice i is what the same request with seed + i answers (vLLM's child seeds).
        singles_tokens = 0
        for offset in range(3):
            single = await client.chat.completions.create(
                model=sim.model, messages=CHAT, seed=10 + offset, max_tokens=12
            )
            assert single.choices[0].message.content == texts[offset]
            assert single.usage is not None
            singles_tokens += single.usage.completion_tokens
        assert answer.usage is not None
        lengths = [c.finish_reason for c in answer.choices]
        assert answer.usage.prompt_tokens == single.usage.prompt_tokens  # counted once
        # The choices' tokens add up, and equal what the same seeds answer alone.
        assert answer.usage.completion_tokens == singles_tokens
        after = await sim.metrics()

        def delta(name: str, **labels: str) -> float:
            return after.value(name, **labels) - before.value(name, **labels)

        # 1 request with n=3 and 3 single ones: 6 sequences, 4 prompts.
        assert delta("vllm:request_success_total") == 6
        assert delta("vllm:prompt_tokens_total") == 4 * answer.usage.prompt_tokens
        completion = answer.usage.completion_tokens
        assert delta("vllm:generation_tokens_total") == completion + singles_tokens

        body = {"messages": CHAT, "n": 3, "seed": 10, "max_tokens": 12}
        raw = (await http.post("/v1/chat/completions", json=body)).json()
        openai_schemas.validate("CreateChatCompletionResponse", raw)
        assert [c["message"]["content"] for c in raw["choices"]] == texts

        stream = await client.chat.completions.create(
            model=sim.model,
            messages=CHAT,
            n=3,
            seed=10,
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        streamed: dict[int, str] = defaultdict(str)
        finishes: dict[int, list[str]] = defaultdict(list)
        for chunk in chunks[:-1]:
            assert len(chunk.choices) == 1
            choice = chunk.choices[0]
            streamed[choice.index] += choice.delta.content or ""
            if choice.finish_reason is not None:
                finishes[choice.index].append(choice.finish_reason)
        assert [streamed[i] for i in range(3)] == texts
        assert [finishes[i] for i in range(3)] == [[r] for r in lengths]
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == completion
        raw_stream = await http.post("/v1/chat/completions", json={**body, "stream": True})
        for document in sse_documents(raw_stream.text):
            openai_schemas.validate("CreateChatCompletionStreamResponse", document)


async def test_n_choices_completions_and_greedy(start_sim, openai_schemas):
    async with start_sim(output_len_min=64, output_len_max=64) as sim, sim.openai() as client:
        answer = await client.completions.create(
            model=sim.model, prompt="Once upon a time", n=3, max_tokens=7, seed=1
        )
        assert [c.index for c in answer.choices] == [0, 1, 2]
        assert answer.usage is not None
        assert answer.usage.completion_tokens == 21
        stream = await client.completions.create(
            model=sim.model,
            prompt="Once upon a time",
            n=3,
            max_tokens=7,
            seed=1,
            stream=True,
            stream_options={"include_usage": True, "continuous_usage_stats": True},
        )
        chunks = [chunk async for chunk in stream]
        streamed: dict[int, str] = defaultdict(str)
        for chunk in chunks:
            for choice in chunk.choices:
                streamed[choice.index] += choice.text
        assert [streamed[i] for i in range(3)] == [c.text for c in answer.choices]
        # Continuous usage counts every choice's tokens so far.
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == 21
        running = [c.usage.completion_tokens for c in chunks[:-1] if c.usage]
        assert running == list(range(1, 22))
        greedy = await client.completions.create(
            model=sim.model, prompt="Once upon a time", n=2, max_tokens=7, temperature=0
        )
        assert greedy.choices[0].text == greedy.choices[1].text


async def choices_until_each_spoke(response: httpx.Response, n: int) -> list[dict[str, Any]]:
    """The streamed choices (one per chunk) until every index has sent one."""
    choices: list[dict[str, Any]] = []
    buffer = ""
    async with asyncio.timeout(20):
        async for text in response.aiter_text():
            buffer += text
            while "\n\n" in buffer:
                event, buffer = buffer.split("\n\n", 1)
                choices.append(json.loads(event.removeprefix("data: "))["choices"][0])
            if {c["index"] for c in choices} == set(range(n)):
                return choices
    raise AssertionError(f"the stream ended before all {n} choices spoke: {choices}")


async def test_n_sequences_share_the_prompt_blocks(start_sim):
    """Three choices that hang after their first token hold the prompt's full blocks
    once: 6 shared + the parent's partial block + one copy per other choice = 9 blocks,
    where three separate requests would hold 21."""
    settings = {
        "fault_hang_rate": 1.0,
        "fault_hang_after_tokens": 1,
        "num_gpu_blocks_override": 64,
        "block_size": 16,
        "max_model_len": 512,
        "enable_prefix_caching": False,  # nothing may come from the cache instead
    }
    prompt = "abcd" * 100  # 100 tokens with the approximate counter
    async with start_sim(**settings) as sim, sim.http() as http:
        body = {"prompt": prompt, "n": 3, "max_tokens": 5, "stream": True}
        async with http.stream("POST", "/v1/completions", json=body) as response:
            await choices_until_each_spoke(response, 3)
            metrics = await sim.metrics()
            assert metrics.value("vllm:num_requests_running") == 3
            assert round(metrics.value("vllm:kv_cache_usage_perc") * 64) == 9
        for _ in range(1000):  # the client gave up: the sequences are aborted
            done = await sim.metrics()
            if done.value("vllm:num_requests_running") == 0:
                break
            await asyncio.sleep(0.02)
        assert done.value("vllm:num_requests_running") == 0
        assert done.value("vllm:request_success_total", finished_reason="abort") == 3
        assert done.value("vllm:kv_cache_usage_perc") == 0


async def test_forks_keep_the_prompt_when_the_first_choice_ends_at_once(start_sim):
    """Choice 0 stops at its first token (a stop string) while choices 1 and 2 hang
    after theirs: they still hold the 6 full prompt blocks plus one copy each (8), not
    just their copies, although the sequence they forked from has finished."""
    prompt = "abcd" * 100
    settings = {
        "num_gpu_blocks_override": 64,
        "block_size": 16,
        "max_model_len": 512,
        "enable_prefix_caching": False,
    }
    async with start_sim(**settings) as sim, sim.http() as http:
        for seed in range(50):
            body = {"prompt": prompt, "n": 3, "max_tokens": 5, "seed": seed, "ignore_eos": True}
            texts = [
                c["text"] for c in (await http.post("/v1/completions", json=body)).json()["choices"]
            ]
            first = texts[0].split()[0]
            if first not in texts[1] and first not in texts[2]:
                break
        else:
            raise AssertionError("no seed gives a first word unique to choice 0")
    hanging = {**settings, "fault_hang_rate": 1.0, "fault_hang_after_tokens": 1}
    async with start_sim(**hanging) as sim, sim.http() as http:
        stream = {**body, "stop": [first], "stream": True}
        async with http.stream("POST", "/v1/completions", json=stream) as response:
            choices = await choices_until_each_spoke(response, 3)
            metrics = await sim.metrics()
        assert {c["index"] for c in choices if c["finish_reason"]} == {0}
        assert metrics.value("vllm:num_requests_running") == 2
        assert round(metrics.value("vllm:kv_cache_usage_perc") * 64) == 8


def check_chat_entry(entry: dict[str, Any], k: int) -> None:
    assert entry["logprob"] < 0
    assert entry["bytes"] == list(entry["token"].encode())
    top = entry["top_logprobs"]
    assert len(top) == k
    assert [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
    assert len({t["token"] for t in top}) == k
    for alternative in top:
        assert alternative["logprob"] < 0
        assert alternative["bytes"] == list(alternative["token"].encode())
    if entry["token"] in {t["token"] for t in top}:
        assert entry["logprob"] in {t["logprob"] for t in top}
    elif top:
        assert entry["logprob"] < top[-1]["logprob"]  # sampled from outside the top-k
    assert sum(math.exp(t["logprob"]) for t in top) <= 1


async def test_chat_logprobs_shapes_streamed_and_not(start_sim, openai_schemas):
    async with start_sim() as sim, sim.openai() as client, sim.http() as http:
        body = {"messages": CHAT, "logprobs": True, "top_logprobs": 3, "seed": 4, "max_tokens": 15}
        raw = (await http.post("/v1/chat/completions", json=body)).json()
        openai_schemas.validate("CreateChatCompletionResponse", raw)
        choice = raw["choices"][0]
        content = choice["logprobs"]["content"]
        assert choice["logprobs"]["refusal"] is None
        assert len(content) == raw["usage"]["completion_tokens"]
        assert "".join(e["token"] for e in content) == choice["message"]["content"]
        for entry in content:
            check_chat_entry(entry, 3)

        streamed = await http.post("/v1/chat/completions", json={**body, "stream": True})
        documents = sse_documents(streamed.text)
        entries = []
        for document in documents:
            openai_schemas.validate("CreateChatCompletionStreamResponse", document)
            logprobs = document["choices"][0]["logprobs"]
            if logprobs is not None:
                assert len(logprobs["content"]) == 1
                entries.extend(logprobs["content"])
        assert entries == content

        # The client's own types, logprobs without alternatives, and greedy decoding.
        answer = await client.chat.completions.create(
            model=sim.model, messages=CHAT, logprobs=True, max_tokens=5, temperature=0
        )
        assert answer.choices[0].logprobs is not None
        tokens = answer.choices[0].logprobs.content or []
        assert len(tokens) == 5
        assert all(t.top_logprobs == [] and t.logprob < 0 for t in tokens)
        greedy = await client.chat.completions.create(
            model=sim.model, messages=CHAT, logprobs=True, top_logprobs=5, temperature=0
        )
        assert greedy.choices[0].logprobs is not None
        for token in greedy.choices[0].logprobs.content or []:
            assert token.top_logprobs[0].token == token.token
            assert token.top_logprobs[0].logprob == token.logprob
        plain = await client.chat.completions.create(model=sim.model, messages=CHAT, max_tokens=3)
        assert plain.choices[0].logprobs is None


async def test_completion_logprobs_shapes_streamed_and_not(start_sim, openai_schemas):
    async with start_sim() as sim, sim.openai() as client, sim.http() as http:
        answer = await client.completions.create(
            model=sim.model, prompt="The river", logprobs=2, max_tokens=9, seed=8
        )
        choice = answer.choices[0]
        assert choice.logprobs is not None
        logprobs = choice.logprobs
        assert logprobs.tokens is not None
        assert logprobs.token_logprobs is not None
        assert logprobs.top_logprobs is not None
        assert logprobs.text_offset is not None
        assert "".join(logprobs.tokens) == choice.text
        assert len(logprobs.tokens) == 9
        for token, logprob, top, offset in zip(
            logprobs.tokens,
            logprobs.token_logprobs,
            logprobs.top_logprobs,
            logprobs.text_offset,
            strict=True,
        ):
            assert logprob < 0
            assert choice.text[offset:].startswith(token)
            assert top[token] == logprob  # the emitted token is always listed
            assert 2 <= len(top) <= 3
        body = {"prompt": "The river", "logprobs": 2, "max_tokens": 9, "seed": 8}
        raw = (await http.post("/v1/completions", json=body)).json()
        openai_schemas.validate("CreateCompletionResponse", raw)
        streamed = await http.post("/v1/completions", json={**body, "stream": True})
        documents = sse_documents(streamed.text)
        merged: dict[str, list[Any]] = defaultdict(list)
        for document in documents:
            openai_schemas.validate("CompletionStreamChunk", document)
            for key, values in document["choices"][0]["logprobs"].items():
                merged[key].extend(values)
        assert dict(merged) == raw["choices"][0]["logprobs"]
