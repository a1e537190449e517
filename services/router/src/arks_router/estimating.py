"""Cheap token estimates for admission, without a tokenizer.

Limits and quotas are *reserved* at admission with an estimate and corrected when
the engine reports real usage, so the estimate only has to be cheap and roughly
right; running a tokenizer on the hot path would cost more than the whole proxy.

- Prompt: UTF-8 bytes of the prompt text divided by `bytes_per_token` (about 4 for
  English; CJK text, ~3 bytes and ~1 token per character, is under-estimated by about
  a quarter, which settlement corrects), plus chat-template overhead
  (`tokens_per_message` per message, `tokens_per_request` for the assistant turn; the
  defaults count ChatML's markers as plain text, which over-reserves a little for real
  tokenizers). Token-id prompts are counted exactly. Images count 765 tokens each (a
  512-px tile at OpenAI's high detail). A Responses API request counts its
  `instructions` and the texts of its `input` items like chat messages.
- Completion: `max_completion_tokens` / `max_tokens` (times `n`, and times the number
  of prompts of a batched completion), `max_output_tokens` for Responses; a chat or
  Responses request without one reserves `default_max_tokens`, a completion request
  `completions_default_max_tokens` (vLLM's default of 16); embeddings generate nothing.
- Both are capped so that one request never reserves more than `max_reserved_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from arks_router.settings import GovernanceSettings

IMAGE_TOKENS = 765
MAX_CHOICES = 128


class ApiKind(StrEnum):
    """The inference APIs the router forwards (their routes are in `surface`)."""

    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    RESPONSES = "responses"


@dataclass(frozen=True, slots=True)
class Estimate:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def text_bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def estimate(kind: ApiKind, body: dict[str, Any], settings: GovernanceSettings) -> Estimate:
    per_token = settings.bytes_per_token
    if kind is ApiKind.CHAT:
        prompt = _chat_prompt(
            body, per_token, settings.tokens_per_message, settings.tokens_per_request
        )
        completion = _limit(body, ("max_completion_tokens", "max_tokens"))
        if completion is None:
            completion = settings.default_max_tokens
        completion *= _choices(body)
    elif kind is ApiKind.COMPLETIONS:
        prompt, prompts = _completion_prompt(body.get("prompt"), per_token)
        completion = _limit(body, ("max_tokens",))
        if completion is None:
            completion = settings.completions_default_max_tokens
        completion *= _choices(body) * max(1, prompts)
    elif kind is ApiKind.EMBEDDINGS:
        prompt, _ = _completion_prompt(body.get("input"), per_token)
        completion = 0
    else:
        prompt = _responses_prompt(
            body, per_token, settings.tokens_per_message, settings.tokens_per_request
        )
        completion = _limit(body, ("max_output_tokens",))
        if completion is None:
            completion = settings.default_max_tokens
    cap = settings.max_reserved_tokens
    prompt = min(prompt, cap)
    return Estimate(prompt, min(completion, cap - prompt))


def prompt_text(kind: ApiKind, body: dict[str, Any]) -> str:
    """The prompt as one string (for prefix routing): chat contents in order, or the
    completion prompt; empty when there is no text prompt."""
    if kind is ApiKind.CHAT:
        messages = body.get("messages")
        if not isinstance(messages, list):
            return ""
        parts: list[str] = []
        for message in messages:
            if isinstance(message, dict):
                parts.extend(_texts(message.get("content")))
        return "\x1e".join(parts)
    if kind is ApiKind.COMPLETIONS:
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            return prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            return prompt[0]
    if kind is ApiKind.RESPONSES:
        texts = _texts(body.get("instructions"))
        given = body.get("input")
        if isinstance(given, str):
            texts.append(given)
        elif isinstance(given, list):
            for item in given:
                if isinstance(item, dict):
                    texts.extend(_texts(item.get("content")))
        return "\x1e".join(texts)
    return ""


# ----------------------------------------------------------------------------- helpers


def _ceil_div(size: int, per_token: float) -> int:
    tokens = int(size / per_token)
    return tokens + 1 if tokens * per_token < size else tokens


def _limit(body: dict[str, Any], names: tuple[str, ...]) -> int | None:
    for name in names:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _choices(body: dict[str, Any]) -> int:
    count = 1
    for name in ("n", "best_of"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > count:
            count = value
    return min(count, MAX_CHOICES)


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
    return []


def _chat_prompt(body: dict[str, Any], per_token: float, per_message: int, per_request: int) -> int:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 0
    size = 0
    tokens = per_request  # the assistant turn the template opens for the answer
    for message in messages:
        if not isinstance(message, dict):
            continue
        tokens += per_message
        content = message.get("content")
        if isinstance(content, str):
            size += text_bytes(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    continue
                text = part.get("text")
                if isinstance(text, str):
                    size += text_bytes(text)
                elif part.get("type") in ("image_url", "input_image", "image"):
                    tokens += IMAGE_TOKENS
        calls = message.get("tool_calls")
        if calls:
            size += len(orjson.dumps(calls))
    tools = body.get("tools")
    if tools:
        size += len(orjson.dumps(tools))
    return tokens + _ceil_div(size, per_token)


def _responses_prompt(
    body: dict[str, Any], per_token: float, per_message: int, per_request: int
) -> int:
    """Responses API: `input` is a string or a list of items (messages whose content is
    a string or parts, function calls and their outputs), plus `instructions`."""
    given = body.get("input")
    items: list[dict[str, Any]] = []
    if isinstance(given, str):
        items.append({"content": given})
    elif isinstance(given, list):
        items.extend(item for item in given if isinstance(item, dict))
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        items.append({"content": instructions})
    tokens = _chat_prompt(
        {"messages": items, "tools": body.get("tools")}, per_token, per_message, per_request
    )
    # function_call / function_call_output items carry their text outside `content`
    extra = sum(
        text_bytes(value)
        for item in items
        for key in ("arguments", "output")
        if isinstance(value := item.get(key), str)
    )
    return tokens + _ceil_div(extra, per_token)


def _completion_prompt(prompt: Any, per_token: float) -> tuple[int, int]:
    """(tokens, number of prompts) of a completion prompt or an embedding input."""
    if isinstance(prompt, str):
        return _ceil_div(text_bytes(prompt), per_token), 1
    if not isinstance(prompt, list) or not prompt:
        return 0, 0
    first = prompt[0]
    if isinstance(first, int):
        return len(prompt), 1  # one prompt as token ids: exact
    tokens = 0
    for item in prompt:
        if isinstance(item, str):
            tokens += _ceil_div(text_bytes(item), per_token)
        elif isinstance(item, list):
            tokens += len(item)
    return tokens, len(prompt)
