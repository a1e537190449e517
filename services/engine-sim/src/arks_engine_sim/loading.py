"""Simulated model loading: what the model directory says, the tokenizer, the delay.

`resolve_max_model_len` runs before the server starts (cheap, and a bad configuration
must fail fast like vLLM's "max seq len larger than the KV cache" error: ConfigError).
`load_model` is the part that takes time and is what `/health` waits for: it loads
`tokenizer.json` (when there is one), waits `startup_delay / time_scale` seconds and, if
asked, reads every file under the model directory (a cold page cache makes that as slow
as a real weight load). File reads run in worker threads.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from arks_common.errors import PermanentError
from arks_engine_sim.settings import SimSettings
from arks_engine_sim.tokenizing import (
    ApproxTokenCounter,
    HfTokenCounter,
    TokenCounter,
    find_tokenizer_file,
)
from arks_engine_sim.vocabulary import Vocabulary

log = logging.getLogger(__name__)

DEFAULT_MAX_MODEL_LEN = 8192
_CONTEXT_KEYS = ("max_position_embeddings", "max_sequence_length", "n_positions", "seq_length")
_READ_CHUNK = 8 * 1024 * 1024


class ConfigError(PermanentError):
    """The settings cannot describe a working engine; the process exits with code 2."""


@dataclass(frozen=True)
class ModelRuntime:
    counter: TokenCounter
    vocab: Vocabulary
    max_model_len: int
    bytes_read: int


def model_directory(settings: SimSettings) -> Path | None:
    path = Path(settings.model)
    return path if path.is_dir() else None


def _context_from_config(directory: Path | None) -> int | None:
    if directory is None:
        return None
    config = directory / "config.json"
    if not config.is_file():
        return None
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {config}: {exc}") from exc
    sources = [data, data.get("text_config") or {}] if isinstance(data, dict) else []
    for source in sources:
        for key in _CONTEXT_KEYS:
            value = source.get(key)
            if isinstance(value, int) and value > 1:
                return value
    return None


def resolve_max_model_len(settings: SimSettings) -> int:
    derived = _context_from_config(model_directory(settings))
    max_len = settings.max_model_len or derived or DEFAULT_MAX_MODEL_LEN
    if derived is not None and settings.max_model_len and settings.max_model_len > derived:
        log.warning(
            "max_model_len %d exceeds the model's %d; accepted (simulator)",
            settings.max_model_len,
            derived,
        )
    capacity = settings.num_kv_blocks * settings.block_size
    if max_len > capacity:
        raise ConfigError(
            f"The model's max seq len ({max_len}) is larger than the maximum number of "
            f"tokens that can be stored in KV cache ({capacity}). Increase "
            "--num-gpu-blocks-override / --kv-blocks-per-gpu or decrease --max-model-len."
        )
    return max_len


def _load_counter(settings: SimSettings) -> TokenCounter:
    location = settings.tokenizer or settings.model
    path = find_tokenizer_file(location)
    caching = settings.enable_prefix_caching
    if path is None:
        if settings.tokenizer is not None:
            raise ConfigError(f"no tokenizer.json at {settings.tokenizer}")
        return ApproxTokenCounter(settings.block_size, caching=caching)
    try:
        return HfTokenCounter(path, settings.block_size, caching=caching)
    except Exception as exc:  # tokenizers raises bare Exception subclasses
        raise ConfigError(f"cannot load tokenizer {path}: {exc}") from exc


def _read_tree(directory: Path) -> int:
    total = 0
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            with path.open("rb") as handle:
                while chunk := handle.read(_READ_CHUNK):
                    total += len(chunk)
    return total


async def load_model(settings: SimSettings, max_model_len: int) -> ModelRuntime:
    counter = await asyncio.to_thread(_load_counter, settings)
    if isinstance(counter, HfTokenCounter):
        vocab = await asyncio.to_thread(Vocabulary.from_tokenizer, counter.tokenizer)
    else:
        vocab = Vocabulary.builtin()
    delay = settings.startup_delay / settings.time_scale
    directory = model_directory(settings)
    bytes_read = 0
    if settings.startup_read_model_dir and directory is not None:
        reading = asyncio.to_thread(_read_tree, directory)
        _, bytes_read = await asyncio.gather(asyncio.sleep(delay), reading)
    elif delay > 0:
        await asyncio.sleep(delay)
    log.info(
        "model loaded: tokenizer=%s vocabulary=%s max_model_len=%d bytes_read=%d",
        counter.kind,
        vocab.source,
        max_model_len,
        bytes_read,
    )
    return ModelRuntime(counter, vocab, max_model_len, bytes_read)
