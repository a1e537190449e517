"""The body fields the router relies on, checked before admission.

The router decides from the body whether a request streams, how many tokens to
reserve and what to route by, so those fields must mean what they say: `stream: "yes"`
is not `false`, `max_tokens: "8"` is not "no limit". A body that breaks these rules is
refused with 400 `invalid_request` naming the `param`, before anything is charged (it
costs no rpm), exactly as OpenAI refuses it. Fields the router does not read are the
engine's business and pass through unchecked.

Checked, per API (OpenAI's types; `null` means absent wherever OpenAI allows it):
- all: `model` a non-empty string (400 `missing_model` when absent or empty);
- chat: `messages` a non-empty array of objects with a string `role`;
  `max_tokens` / `max_completion_tokens` integers >= 1; `n` an integer in 1..128;
- completions: `prompt` a string, or a non-empty array of strings, of token ids or of
  token-id arrays; `max_tokens` >= 0 (0 echoes the prompt); `n`, `best_of` in 1..128;
- embeddings: `input` like `prompt`;
- responses: `input` a string or an array of items (objects); `instructions` a
  string; `max_output_tokens` >= 1;
- chat, completions, responses: `stream` a boolean; `stream_options` an object whose
  `include_usage`, when present, is a boolean.
"""

from __future__ import annotations

from typing import Any

from arks_router import api_errors
from arks_router.estimating import MAX_CHOICES, ApiKind

_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


def _got(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _invalid(param: str, expected: str, value: Any) -> api_errors.ApiError:
    return api_errors.invalid_body(
        f"Invalid type for '{param}': expected {expected}, but got {_got(value)} instead.",
        param=param,
    )


def model_of(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None or model == "":
        raise api_errors.missing_model()
    if not isinstance(model, str):
        raise _invalid("model", "a string", model)
    return model


def validate(kind: ApiKind, body: dict[str, Any]) -> None:
    """Raise ApiError(400) for the first field of `body` that breaks the rules above."""
    if kind is ApiKind.CHAT:
        _messages(body.get("messages"))
        _integer(body, "max_tokens", 1)
        _integer(body, "max_completion_tokens", 1)
        _integer(body, "n", 1, MAX_CHOICES)
    elif kind is ApiKind.COMPLETIONS:
        _prompt(body.get("prompt"), "prompt")
        _integer(body, "max_tokens", 0)
        _integer(body, "n", 1, MAX_CHOICES)
        _integer(body, "best_of", 1, MAX_CHOICES)
    elif kind is ApiKind.EMBEDDINGS:
        _prompt(body.get("input"), "input")
    else:
        _items(body.get("input"))
        value = body.get("instructions")
        if value is not None and not isinstance(value, str):
            raise _invalid("instructions", "a string", value)
        _integer(body, "max_output_tokens", 1)
    if kind is not ApiKind.EMBEDDINGS:
        _streaming(body)


def _integer(body: dict[str, Any], name: str, low: int, high: int | None = None) -> None:
    value = body.get(name)
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise _invalid(name, "an integer", value)
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise api_errors.invalid_body(
            f"Invalid '{name}': expected a value {bound}, but got {value} instead.", param=name
        )


def _streaming(body: dict[str, Any]) -> None:
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid("stream", "a boolean", stream)
    options = body.get("stream_options")
    if options is None:
        return
    if not isinstance(options, dict):
        raise _invalid("stream_options", "an object", options)
    include = options.get("include_usage")
    if include is not None and not isinstance(include, bool):
        raise _invalid("stream_options.include_usage", "a boolean", include)


def _messages(messages: Any) -> None:
    if messages is None:
        raise api_errors.invalid_body("Missing required parameter: 'messages'.", "messages")
    if not isinstance(messages, list):
        raise _invalid("messages", "an array", messages)
    if not messages:
        raise api_errors.invalid_body(
            "Invalid 'messages': empty array. Expected an array with at least one message.",
            param="messages",
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _invalid(f"messages[{index}]", "an object", message)
        if not isinstance(message.get("role"), str):
            raise _invalid(f"messages[{index}].role", "a string", message.get("role"))


def _prompt(prompt: Any, name: str) -> None:
    """A string, or a non-empty array of strings, of token ids or of token-id arrays."""
    expected = "a string or an array of strings or token ids"
    if isinstance(prompt, str):
        return
    if prompt is None:
        raise api_errors.invalid_body(f"Missing required parameter: '{name}'.", name)
    if not isinstance(prompt, list) or not prompt:
        raise _invalid(name, expected, prompt)
    if all(isinstance(p, str) for p in prompt) or all(_token_id(p) for p in prompt):
        return
    if all(isinstance(p, list) and p and all(_token_id(t) for t in p) for p in prompt):
        return
    raise _invalid(name, expected, prompt)


def _token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _items(given: Any) -> None:
    if given is None or isinstance(given, str):
        return
    if not isinstance(given, list):
        raise _invalid("input", "a string or an array of input items", given)
    for index, item in enumerate(given):
        if not isinstance(item, dict):
            raise _invalid(f"input[{index}]", "an object", item)
