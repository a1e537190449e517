"""`POST /v1/responses` passes through when the endpoint's matchConfigs allow it, and its
usage (`input_tokens` / `output_tokens`, streamed in `response.completed`) is charged
like chat.

The engine simulator does not serve the Responses API, so the engine here is a small
real uvicorn app of this module that speaks it (as vLLM does): a response object with
`usage`, or the event stream `response.created` ... `response.output_text.delta` ...
`response.completed`, each event written on its own and the last one split in two
writes, as a network would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import pytest
import uvicorn

from arks_common.events import PathMatch

TOKEN = "sk-responses"
AUTH = {"authorization": f"Bearer {TOKEN}"}
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _response(model: str, words: list[str], status: str, usage: dict[str, Any] | None) -> dict:
    text = " ".join(words)
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1_700_000_000,
        "model": model,
        "status": status,
        "output": [
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ]
        if status == "completed"
        else [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }


async def responses_engine(scope: Scope, receive: Receive, send: Send) -> None:
    """POST /v1/responses: the input's words are its tokens, it answers max_output_tokens."""
    if scope["type"] != "http":
        return
    raw = b""
    while True:
        message = await receive()
        raw += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] != "/v1/responses":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b'{"detail":"Not Found"}'})
        return
    body = json.loads(raw)
    prompt = body["input"] if isinstance(body["input"], str) else json.dumps(body["input"])
    words = [f"w{i}" for i in range(body.get("max_output_tokens") or 5)]
    usage = {
        "input_tokens": len(prompt.split()),
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": len(words),
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": len(prompt.split()) + len(words),
    }
    if not body.get("stream"):
        payload = json.dumps(_response(body["model"], words, "completed", usage)).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": _response(body["model"], [], "in_progress", None)},
        *(
            {
                "type": "response.output_text.delta",
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "delta": word + " ",
                "logprobs": [],
            }
            for word in words
        ),
        {
            "type": "response.completed",
            "response": _response(body["model"], words, "completed", usage),
        },
    ]
    for number, event in enumerate(events):
        event["sequence_number"] = number
        data = f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
        if number == len(events) - 1:
            await send({"type": "http.response.body", "body": data[:40], "more_body": True})
            data = data[40:]
        await send({"type": "http.response.body", "body": data, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


@pytest.fixture
async def engine() -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
    server = uvicorn.Server(
        uvicorn.Config(responses_engine, log_config=None, access_log=False, lifespan="off")
    )
    task = asyncio.create_task(server.serve(sockets=[sock]), name="responses-engine")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


async def test_responses_pass_through_and_are_charged_like_chat(engine, routers, state, usage):
    await state.route(
        "m",
        [engine],
        matches=[
            PathMatch(type="Exact", value="/v1/chat/completions"),
            PathMatch(type="Exact", value="/v1/responses"),
        ],
    )
    await state.token(TOKEN, ["m"], tpm=100_000)
    router = await routers.start()
    client = router.openai(TOKEN)
    try:
        unary = await client.responses.create(model="m", input="one two three", max_output_tokens=4)
        stream = await client.responses.create(
            model="m", input="four five", max_output_tokens=6, stream=True
        )
        events = [event async for event in stream]
    finally:
        await client.close()
    assert unary.output_text == "w0 w1 w2 w3"
    assert unary.usage is not None
    assert (unary.usage.input_tokens, unary.usage.output_tokens) == (3, 4)
    kinds = [e.type for e in events]
    assert (kinds[0], kinds[-1]) == ("response.created", "response.completed")
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == (
        "w0 w1 w2 w3 w4 w5 "
    )
    recorded = await usage.wait(2)
    assert [(e.prompt_tokens, e.completion_tokens) for e in recorded] == [(3, 4), (2, 6)]
    assert all(e.usage_source == "engine" and e.outcome == "success" for e in recorded)
    assert [e.stream for e in recorded] == [False, True]
    assert [e.model for e in recorded] == ["m", "m"]


async def test_responses_are_refused_when_match_configs_do_not_allow_them(
    engine, routers, state, usage, raw
):
    await state.route(
        "m", [engine], matches=[PathMatch(type="Exact", value="/v1/chat/completions")]
    )
    await state.token(TOKEN, ["m"], rpm=10)
    router = await routers.start()
    answer = await raw(
        router.url, "POST", "/v1/responses", headers=AUTH, body={"model": "m", "input": "hi"}
    )
    assert answer.status == 404
    assert answer.json()["error"]["code"] == "path_not_routed"
    assert await usage.all() == []
