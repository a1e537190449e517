"""Command-line parsing that accepts vLLM's argument conventions.

The reconciler starts engines with the same runtime arguments whatever the engine, so
this parser is lenient where vLLM's is: flags are generated from `SimSettings`
(`--max-num-seqs`, `--no-enable-prefix-caching`, ...), underscores in flag names are
accepted (`--max_num_seqs`), a leading positional model (`arks-engine-sim MODEL` or
`... serve MODEL`) is taken as `--model`, and flags the simulator does not know
(`--dtype half`, `--enforce-eager`) are returned so the caller can warn about them
instead of failing. Precedence: flag > `ARKS_SIM_*` env var > default. A value that
does not validate raises pydantic's ValidationError.
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import dataclass
from typing import Any

from arks_engine_sim.settings import ENV_PREFIX, SimSettings


@dataclass(frozen=True)
class ParsedArguments:
    settings: SimSettings
    ignored: list[str]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def _base_type(annotation: Any) -> Any:
    annotation = _unwrap_optional(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arks-engine-sim",
        description="OpenAI-compatible vLLM stand-in with a batching, latency and KV-cache "
        "model. Every flag is also read from the environment variable shown.",
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,
    )
    for name, field in SimSettings.model_fields.items():
        env = f"{ENV_PREFIX}{name.upper()}"
        default = field.get_default(call_default_factory=True)
        help_text = f"{field.description} [env {env}; default {default!r}]"
        kind = _base_type(field.annotation)
        if kind is bool:
            parser.add_argument(
                _flag(name), dest=name, action=argparse.BooleanOptionalAction, help=help_text
            )
        elif typing.get_origin(kind) is list:
            parser.add_argument(_flag(name), dest=name, nargs="+", help=help_text)
        elif typing.get_origin(kind) is typing.Literal:
            choices = [str(choice) for choice in typing.get_args(kind)]
            parser.add_argument(_flag(name), dest=name, choices=choices, help=help_text)
        else:
            parser.add_argument(_flag(name), dest=name, help=help_text)
    return parser


def _normalise(argv: list[str]) -> list[str]:
    """vLLM accepts `--max_num_seqs` as well as `--max-num-seqs`; so do we."""
    out: list[str] = []
    for token in argv:
        if token.startswith("--") and len(token) > 2:
            flag, sep, value = token.partition("=")
            token = flag.replace("_", "-") + sep + value
        out.append(token)
    return out


def parse_arguments(argv: list[str]) -> ParsedArguments:
    args = _normalise(list(argv))
    if args and args[0] == "serve":
        args = args[1:]
    positional_model: str | None = None
    if args and not args[0].startswith("-"):
        positional_model = args.pop(0)
    namespace, unknown = build_parser().parse_known_args(args)
    if positional_model is None:
        positional_model, unknown = _positional_among(unknown)
    values: dict[str, Any] = vars(namespace)
    if positional_model is not None:
        values.setdefault("model", positional_model)
    return ParsedArguments(settings=SimSettings(**values), ignored=unknown)


def _positional_among(unknown: list[str]) -> tuple[str | None, list[str]]:
    """`... --port 8000 /models/x ...`: a bare token that does not follow an unknown
    `--flag` (whose value it would be) is the positional model. Ambiguous after an
    unknown boolean flag (`--enforce-eager /models/x`), hence `--model` is preferred."""
    for index, token in enumerate(unknown):
        if token.startswith("-"):
            continue
        previous = unknown[index - 1] if index else ""
        if previous.startswith("--") and "=" not in previous:
            continue
        return token, unknown[:index] + unknown[index + 1 :]
    return None, unknown
