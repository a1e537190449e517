"""Validating OpenAI request bodies by hand into small typed records.

Only the fields the simulator acts on are checked (no schema engine on the hot path);
unknown fields are ignored as vLLM ignores them. Each problem raises `ApiError` 400 with
vLLM-like wording and the offending `param`; a model name the server does not serve is
404 "The model `x` does not exist.". Tools, `tool_choice` and `response_format` are
checked in structured_params.py. `n` is 1..128 (OpenAI's bound); logprobs are 0..
`max_logprobs` per token (chat: `logprobs` + `top_logprobs`, which needs `logprobs`;
completions: `logprobs: k`). Features the simulator does not model (echo, several
prompts in one request, non-text content parts) are refused with 400 rather than
silently answered wrongly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from arks_engine_sim.errors import ApiError, bad_request
from arks_engine_sim.settings import SimSettings
from arks_engine_sim.structured_params import (
    OutputFormat,
    ToolUse,
    earlier_tool_calls,
    parse_response_format,
    parse_tool_use,
)
from arks_engine_sim.tokenizing import ChatMessage

Kind = Literal["chat", "completion"]
EncodingFormat = Literal["float", "base64"]
_MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_N = 128


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    kind: Kind
    model: str
    messages: list[ChatMessage] | None
    prompt_text: str | None
    prompt_ids: list[int] | None
    max_tokens: int | None
    stop: tuple[str, ...]
    seed: int | None
    temperature: float
    ignore_eos: bool
    stream: bool
    include_usage: bool
    continuous_usage: bool
    n: int = 1
    logprobs: int | None = None  # alternatives per token; None: no logprobs
    tool_use: ToolUse | None = None
    output_format: OutputFormat | None = None
    after_tool_result: bool = False  # the last turn is a tool's result


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    model: str
    texts: list[str] | None
    token_ids: list[list[int]] | None
    encoding_format: EncodingFormat
    dimensions: int | None


def load_json(body: bytes) -> dict[str, Any]:
    if len(body) > _MAX_BODY_BYTES:
        raise ApiError(413, f"Request body larger than {_MAX_BODY_BYTES} bytes.")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"Invalid JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.")
    return data


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _optional_int(body: dict[str, Any], key: str, minimum: int | None = None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not _is_int(value):
        raise bad_request(f"`{key}` must be an integer, got {value!r}.", key)
    if minimum is not None and value < minimum:
        raise bad_request(f"`{key}` must be at least {minimum}, got {value}.", key)
    return int(value)


def _optional_bool(body: dict[str, Any], key: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"`{key}` must be a boolean, got {value!r}.", key)
    return value


def resolve_model(body: dict[str, Any], served: list[str]) -> str:
    model = body.get("model")
    if model is None:
        return served[0]
    if not isinstance(model, str):
        raise bad_request("`model` must be a string.", "model")
    if model not in served:
        raise ApiError(404, f"The model `{model}` does not exist.", param="model")
    return model


def _choices(body: dict[str, Any]) -> int:
    n = _optional_int(body, "n", 1)
    if n is not None and n > MAX_N:
        raise bad_request(f"`n` must be at most {MAX_N}, got {n}.", "n")
    return n or 1


def _logprob_count(value: int, key: str, settings: SimSettings) -> int:
    if value < 0:
        raise bad_request(f"`{key}` must be a non-negative value, got {value}.", key)
    if value > settings.max_logprobs:
        raise bad_request(
            f"Requested sample logprobs of {value}, which is greater than max allowed: "
            f"{settings.max_logprobs}",
            key,
        )
    return value


def _chat_logprobs(body: dict[str, Any], settings: SimSettings) -> int | None:
    wanted = _optional_bool(body, "logprobs")
    top = _optional_int(body, "top_logprobs")
    if top is not None:
        _logprob_count(top, "top_logprobs", settings)
        if top > 0 and not wanted:
            raise bad_request(
                "when using `top_logprobs`, `logprobs` must be set to true.", "top_logprobs"
            )
    return (top or 0) if wanted else None


def _sampling(body: dict[str, Any]) -> tuple[float, int | None, tuple[str, ...], bool]:
    temperature = body.get("temperature")
    if temperature is None:
        temperature = 1.0
    elif not _is_number(temperature) or temperature < 0:
        raise bad_request(
            f"temperature must be a non-negative number, got {temperature!r}.", "temperature"
        )
    top_p = body.get("top_p")
    if top_p is not None and (not _is_number(top_p) or not 0 < top_p <= 1):
        raise bad_request(f"top_p must be in (0, 1], got {top_p!r}.", "top_p")
    seed = _optional_int(body, "seed")
    raw_stop = body.get("stop")
    if raw_stop is None:
        stop: tuple[str, ...] = ()
    elif isinstance(raw_stop, str):
        stop = (raw_stop,) if raw_stop else ()
    elif isinstance(raw_stop, list) and all(isinstance(s, str) for s in raw_stop):
        stop = tuple(s for s in raw_stop if s)
    else:
        raise bad_request("`stop` must be a string or a list of strings.", "stop")
    ignore_eos = _optional_bool(body, "ignore_eos")
    return float(temperature), seed, stop, ignore_eos


def _streaming(body: dict[str, Any]) -> tuple[bool, bool, bool]:
    stream = _optional_bool(body, "stream")
    options = body.get("stream_options")
    if options is None:
        return stream, False, False
    if not stream:
        raise bad_request(
            "Stream options can only be defined when `stream=True`.", "stream_options"
        )
    if not isinstance(options, dict):
        raise bad_request("`stream_options` must be an object.", "stream_options")
    return (
        stream,
        _optional_bool(options, "include_usage"),
        _optional_bool(options, "continuous_usage_stats"),
    )


def _message_text(message: dict[str, Any], index: int) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise bad_request(
                    "The simulator accepts only text content parts.", f"messages[{index}]"
                )
            text = part.get("text")
            if not isinstance(text, str):
                raise bad_request("A text content part needs `text`.", f"messages[{index}]")
            texts.append(text)
        return "\n".join(texts)
    raise bad_request("Message `content` must be a string or a list of parts.", "messages")


def _messages(raw: object) -> list[ChatMessage]:
    if not isinstance(raw, list) or not raw:
        raise bad_request("`messages` must be a non-empty list.", "messages")
    messages: list[ChatMessage] = []
    for index, message in enumerate(raw):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise bad_request(f"messages[{index}] must be an object with a `role`.", "messages")
        text = _message_text(message, index)
        if message["role"] == "assistant":
            calls = earlier_tool_calls(message, index)
            text = f"{text}\n{calls}" if text and calls else text or calls
        messages.append(ChatMessage(message["role"], text))
    return messages


def parse_chat(body: dict[str, Any], settings: SimSettings) -> GenerationRequest:
    model = resolve_model(body, settings.model_names)
    tool_use = parse_tool_use(body, auto_enabled=settings.enable_auto_tool_choice)
    messages = _messages(body.get("messages"))
    output_format = parse_response_format(body)
    logprobs = _chat_logprobs(body, settings)
    n = _choices(body)
    max_tokens = _optional_int(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = _optional_int(body, "max_tokens", 1)
    temperature, seed, stop, ignore_eos = _sampling(body)
    stream, include_usage, continuous = _streaming(body)
    return GenerationRequest(
        kind="chat",
        model=model,
        messages=messages,
        prompt_text=None,
        prompt_ids=None,
        max_tokens=max_tokens,
        stop=stop,
        seed=seed,
        temperature=temperature,
        ignore_eos=ignore_eos,
        stream=stream,
        include_usage=include_usage,
        continuous_usage=continuous,
        n=n,
        logprobs=logprobs,
        tool_use=tool_use,
        output_format=output_format,
        after_tool_result=messages[-1].role == "tool",
    )


def _single_prompt(prompt: object) -> str | list[int]:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt:
        if all(_is_int(t) for t in prompt):
            return [int(t) for t in prompt]
        if len(prompt) == 1:
            return _single_prompt(prompt[0])
        raise bad_request("The simulator accepts one prompt per request.", "prompt")
    raise bad_request("`prompt` must be a string or a list of token ids.", "prompt")


def parse_completion(body: dict[str, Any], settings: SimSettings) -> GenerationRequest:
    model = resolve_model(body, settings.model_names)
    if "prompt" not in body:
        raise bad_request("`prompt` is required.", "prompt")
    prompt = _single_prompt(body["prompt"])
    if body.get("echo"):
        raise bad_request("The simulator does not support echo.", "echo")
    logprobs = _optional_int(body, "logprobs")
    if logprobs is not None:
        _logprob_count(logprobs, "logprobs", settings)
    output_format = parse_response_format(body)
    n = _choices(body)
    if body.get("best_of") not in (None, 1):
        raise bad_request("The simulator supports only best_of=1.", "best_of")
    max_tokens = _optional_int(body, "max_tokens", 1)
    temperature, seed, stop, ignore_eos = _sampling(body)
    stream, include_usage, continuous = _streaming(body)
    return GenerationRequest(
        kind="completion",
        model=model,
        messages=None,
        prompt_text=prompt if isinstance(prompt, str) else None,
        prompt_ids=prompt if isinstance(prompt, list) else None,
        # The legacy completions API defaults to 16 tokens (OpenAI and vLLM alike).
        max_tokens=16 if max_tokens is None else max_tokens,
        stop=stop,
        seed=seed,
        temperature=temperature,
        ignore_eos=ignore_eos,
        stream=stream,
        include_usage=include_usage,
        continuous_usage=continuous,
        n=n,
        logprobs=logprobs,
        output_format=output_format,
    )


def parse_embedding(body: dict[str, Any], served: list[str], dim: int) -> EmbeddingRequest:
    model = resolve_model(body, served)
    raw = body.get("input")
    texts: list[str] | None = None
    ids: list[list[int]] | None = None
    if isinstance(raw, str):
        texts = [raw]
    elif isinstance(raw, list) and raw:
        if all(isinstance(x, str) for x in raw):
            texts = list(raw)
        elif all(_is_int(x) for x in raw):
            ids = [list(raw)]
        elif all(isinstance(x, list) and x and all(_is_int(t) for t in x) for x in raw):
            ids = [list(x) for x in raw]
    if texts is None and ids is None:
        raise bad_request(
            "`input` must be a string, a list of strings or token ids, non-empty.", "input"
        )
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise bad_request("`encoding_format` must be float or base64.", "encoding_format")
    dimensions = _optional_int(body, "dimensions", 1)
    if dimensions is not None and dimensions > dim:
        raise bad_request(f"`dimensions` must be at most {dim}.", "dimensions")
    return EmbeddingRequest(
        model=model,
        texts=texts,
        token_ids=ids,
        encoding_format="base64" if encoding == "base64" else "float",
        dimensions=dimensions,
    )


def resolve_max_tokens(
    prompt_len: int, requested: int | None, max_model_len: int, *, prompt_param: str
) -> int:
    """vLLM's context-length rules: the prompt must leave room for at least one token."""
    if prompt_len >= max_model_len:
        raise bad_request(
            f"This model's maximum context length is {max_model_len} tokens. However, your "
            f"request has {prompt_len} input tokens. Please reduce the length of the input.",
            prompt_param,
        )
    room = max_model_len - prompt_len
    if requested is None:
        return room
    if requested > room:
        raise bad_request(
            f"'max_tokens' or 'max_completion_tokens' is too large: {requested}. This model's "
            f"maximum context length is {max_model_len} tokens and your request has "
            f"{prompt_len} input tokens ({requested} > {max_model_len} - {prompt_len}).",
            "max_tokens",
        )
    return requested
