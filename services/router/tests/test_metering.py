"""Usage out of SSE streams and JSON bodies, however the bytes are cut."""

from __future__ import annotations

import orjson

from arks_router import estimating, metering
from arks_router.settings import GovernanceSettings


def _events(usage_chunk: bool = True) -> list[bytes]:
    def event(payload: object) -> bytes:
        return b"data: " + orjson.dumps(payload) + b"\n\n"

    def delta(content: str, **extra: object) -> dict[str, object]:
        choice = {"index": 0, "delta": {"content": content, **extra}}
        return {"id": "1", "model": "m", "choices": [choice], "usage": None}

    out = [event(delta("", role="assistant"))]
    out += [event(delta(f"w{i}")) for i in range(5)]
    if usage_chunk:
        usage = {
            "prompt_tokens": 11,
            "completion_tokens": 5,
            "total_tokens": 16,
            "prompt_tokens_details": {"cached_tokens": 4},
        }
        out.append(event({"id": "1", "model": "m", "choices": [], "usage": usage}))
    out.append(b"data: [DONE]\n\n")
    return out


def test_usage_chunk_is_found_and_stripped_however_the_stream_is_split():
    whole = b"".join(_events())
    for size in (1, 3, 7, 64, len(whole)):
        meter = metering.StreamMeter(strip_usage=True)
        seen = b"".join(meter.feed(whole[i : i + size]) for i in range(0, len(whole), size))
        seen += meter.finish()
        assert meter.usage == metering.Usage(11, 5, 4)
        assert meter.done
        assert meter.model == "m"
        assert meter.content_events == 5
        assert b'"usage":{' not in seen
        assert seen == b"".join(e for e in _events() if b'"choices":[]' not in e)


def test_usage_chunk_passes_through_when_the_client_asked_for_it():
    meter = metering.StreamMeter(strip_usage=False)
    whole = b"".join(_events())
    assert meter.feed(whole) + meter.finish() == whole
    assert meter.usage is not None


def test_crlf_framing_and_a_broken_stream_are_counted():
    meter = metering.StreamMeter(strip_usage=True)
    broken = b"".join(e.replace(b"\n\n", b"\r\n\r\n") for e in _events(usage_chunk=False)[:4])
    out = meter.feed(broken[:-5])
    assert out.count(b"data:") == 3
    assert meter.usage is None
    assert meter.completion_estimate == 2
    assert not meter.done


def test_body_usage_and_model():
    body = orjson.dumps({"model": "m", "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
    assert metering.parse_body(body) == (metering.Usage(3, 2, 0), "m")
    assert metering.parse_body(b"not json") == (None, "")


def test_estimates_are_cheap_and_capped():
    settings = GovernanceSettings(default_max_tokens=100, max_reserved_tokens=950)
    chat = {
        "messages": [
            {"role": "system", "content": "a" * 400},
            {
                "role": "user",
                "content": [{"type": "text", "text": "b" * 40}, {"type": "image_url"}],
            },
        ],
        "max_tokens": 50,
        "n": 2,
    }
    estimate = estimating.estimate(estimating.ApiKind.CHAT, chat, settings)
    assert estimate.prompt_tokens == 6 + 2 * 7 + 765 + 110
    assert estimate.completion_tokens == 950 - estimate.prompt_tokens  # capped
    small = estimating.estimate(
        estimating.ApiKind.CHAT, {"messages": [{"role": "user", "content": "héllo"}]}, settings
    )
    assert small.completion_tokens == 100
    assert small.prompt_tokens == 6 + 7 + 2  # 6 UTF-8 bytes
    ids = estimating.estimate(
        estimating.ApiKind.COMPLETIONS, {"prompt": [1, 2, 3, 4, 5], "max_tokens": 7}, settings
    )
    assert (ids.prompt_tokens, ids.completion_tokens) == (5, 7)
    batch = estimating.estimate(
        estimating.ApiKind.COMPLETIONS, {"prompt": ["abcd", "abcdefgh"]}, settings
    )
    assert (batch.prompt_tokens, batch.completion_tokens) == (3, 32)
    embed = estimating.estimate(estimating.ApiKind.EMBEDDINGS, {"input": "x" * 41}, settings)
    assert (embed.prompt_tokens, embed.completion_tokens) == (11, 0)
    responses = estimating.estimate(
        estimating.ApiKind.RESPONSES,
        {
            "instructions": "i" * 8,
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "t" * 12}]},
                {"type": "function_call_output", "call_id": "c", "output": "o" * 8},
            ],
            "max_output_tokens": 9,
        },
        settings,
    )
    # 6 + 3 items x 7, (8 + 12) / 4 bytes of content, 8 / 4 bytes of tool output
    assert (responses.prompt_tokens, responses.completion_tokens) == (6 + 21 + 5 + 2, 9)
    plain = estimating.estimate(estimating.ApiKind.RESPONSES, {"input": "abcd"}, settings)
    assert (plain.prompt_tokens, plain.completion_tokens) == (6 + 7 + 1, 100)
