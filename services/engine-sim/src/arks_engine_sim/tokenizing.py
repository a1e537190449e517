"""Turning prompts into what the engine model needs: a token count, the chained hashes of
the prompt's full KV blocks (for the prefix cache) and a stable fingerprint (for
deterministic output).

Two counters share one interface:
- `HfTokenCounter`: the model's own `tokenizer.json` through HF `tokenizers` (exact counts;
  prompts longer than `_THREAD_THRESHOLD` characters are encoded in a worker thread so
  the event loop never stalls on them).
- `ApproxTokenCounter`: no tokenizer file; one token per 4 UTF-8 bytes (rounded up), and a
  block is 4 x block_size consecutive bytes, so equal text prefixes give equal blocks.

Chat messages are rendered with a fixed ChatML-style template (the model's own Jinja
template is not evaluated); tool definitions go into the system turn, as Qwen's and
Hermes' templates put them. `pieces(text)` splits generated text (structured answers)
into the tokens the simulated model emits, so their count is the counter's own.
Nothing here raises on user input; a broken tokenizer file raises at load time.
"""

from __future__ import annotations

import asyncio
import hashlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tokenizers import Tokenizer

_THREAD_THRESHOLD = 16_384
_BYTES_PER_TOKEN = 4

TokenizerKind = Literal["huggingface", "approximate"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class PromptTokens:
    count: int
    block_hashes: list[int]
    fingerprint: int


def render_chat(messages: Sequence[ChatMessage], tools: str | None = None) -> str:
    """ChatML: what most instruction-tuned models' templates produce, good enough to count."""
    turns = list(messages)
    if tools:
        if turns and turns[0].role == "system":
            turns[0] = ChatMessage("system", f"{turns[0].content}\n\n{tools}")
        else:
            turns.insert(0, ChatMessage("system", tools))
    parts = [f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in turns]
    parts.append("<|im_start|>assistant\n")
    return "".join(parts)


def _fingerprint(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _chain(pieces: Sequence[object]) -> list[int]:
    # Each block's hash covers every block before it, so a hit on block k implies the
    # whole prefix up to k matches (the property vLLM's prefix cache relies on).
    digest = 0
    hashes: list[int] = []
    for piece in pieces:
        digest = hash((digest, piece))
        hashes.append(digest)
    return hashes


def hash_token_ids(ids: Sequence[int], block_size: int, *, caching: bool) -> PromptTokens:
    fingerprint = _fingerprint(array("q", ids).tobytes())
    if not caching:
        return PromptTokens(len(ids), [], fingerprint)
    full = len(ids) // block_size
    pieces = [tuple(ids[i * block_size : (i + 1) * block_size]) for i in range(full)]
    return PromptTokens(len(ids), _chain(pieces), fingerprint)


class ApproxTokenCounter:
    kind: TokenizerKind = "approximate"
    source: str | None = None

    def __init__(self, block_size: int, *, caching: bool) -> None:
        self.block_size = block_size
        self.caching = caching

    def count(self, text: str) -> int:
        return max(1, -(-len(text.encode()) // _BYTES_PER_TOKEN))

    def encode_sync(self, text: str, *, special: bool) -> PromptTokens:
        data = text.encode()
        count = max(1, -(-len(data) // _BYTES_PER_TOKEN))
        fingerprint = _fingerprint(data)
        if not self.caching:
            return PromptTokens(count, [], fingerprint)
        chunk = _BYTES_PER_TOKEN * self.block_size
        full = min(len(data) // chunk, count // self.block_size)
        pieces = [data[i * chunk : (i + 1) * chunk] for i in range(full)]
        return PromptTokens(count, _chain(pieces), fingerprint)

    async def encode(self, text: str, *, special: bool) -> PromptTokens:
        return self.encode_sync(text, special=special)

    def encode_ids(self, ids: Sequence[int]) -> PromptTokens:
        return hash_token_ids(ids, self.block_size, caching=self.caching)

    def pieces(self, text: str) -> list[str]:
        """`count(text)` pieces: token k holds the characters that start in bytes
        [4k, 4k + 4) (possibly none, when a wide character straddles a boundary)."""
        out = [""] * self.count(text)
        offset = 0
        for char in text:
            out[offset // _BYTES_PER_TOKEN] += char
            offset += len(char.encode())
        return out


class HfTokenCounter:
    kind: TokenizerKind = "huggingface"

    def __init__(self, path: Path, block_size: int, *, caching: bool) -> None:
        self.tokenizer = Tokenizer.from_file(str(path))
        self.source: str | None = str(path)
        self.block_size = block_size
        self.caching = caching

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def encode_sync(self, text: str, *, special: bool) -> PromptTokens:
        ids = self.tokenizer.encode(text, add_special_tokens=special).ids
        return hash_token_ids(ids, self.block_size, caching=self.caching)

    async def encode(self, text: str, *, special: bool) -> PromptTokens:
        if len(text) > _THREAD_THRESHOLD:
            return await asyncio.to_thread(self.encode_sync, text, special=special)
        return self.encode_sync(text, special=special)

    def encode_ids(self, ids: Sequence[int]) -> PromptTokens:
        return hash_token_ids(ids, self.block_size, caching=self.caching)

    def pieces(self, text: str) -> list[str]:
        """The text of each token, cut at token end offsets (byte-level tokenizers trim
        a leading space from offsets; cutting at ends gives it to the next token)."""
        offsets = self.tokenizer.encode(text, add_special_tokens=False).offsets
        out: list[str] = []
        start = 0
        for index, (_, end) in enumerate(offsets):
            stop = len(text) if index == len(offsets) - 1 else max(end, start)
            out.append(text[start:stop])
            start = stop
        return out or [text]


TokenCounter = ApproxTokenCounter | HfTokenCounter


def find_tokenizer_file(location: str) -> Path | None:
    path = Path(location)
    if path.is_file() and path.name.endswith(".json"):
        return path
    candidate = path / "tokenizer.json"
    return candidate if candidate.is_file() else None
