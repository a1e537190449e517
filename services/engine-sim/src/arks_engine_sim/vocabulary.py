"""The words the simulated model answers with, pre-encoded for the streaming hot path.

Each output token is one entry: its text (with a leading space, except at the start of
an answer) and that text already JSON-encoded, so a streamed chunk is a concatenation
of byte strings. With a real tokenizer the entries are the tokenizer's own whole-word
tokens (so re-tokenising an answer gives about as many tokens as were reported);
otherwise a built-in list of common English words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson
from tokenizers import Tokenizer

_BUILTIN_TEXT = (
    "the of and to in is that it for on with as was be at by this from or an are not have "
    "but had they which one you were all we can her has there been if more when will would "
    "who so no other into time only new some could these two may first then do any like my "
    "now over such our man me even most made after also did many before must through back "
    "years where much your way well down should because each just those people how too "
    "little state good very make world still own see men work long get here between both "
    "life being under never day same another know while last might us great old year off "
    "come since against go came right used take three small large next early young "
    "important few public bad same able model engine token cache batch queue request "
    "prefix block latency stream answer river mountain window garden music light water "
    "paper story city road house music number system group problem fact point question"
)
_BUILTIN_WORDS = _BUILTIN_TEXT.split()
_PUNCTUATION = (".", ",")
_WORD_TOKEN = re.compile(r"^[a-z]{2,12}$")
_MAX_TOKENIZER_WORDS = 4096
_MIN_TOKENIZER_WORDS = 64


@dataclass(frozen=True)
class Vocabulary:
    texts: list[str]
    first_texts: list[str]
    json: list[bytes]
    first_json: list[bytes]
    source: str
    words: list[str]  # the entries that are words (strings inside structured answers)

    @property
    def size(self) -> int:
        return len(self.texts)

    @classmethod
    def from_words(cls, words: list[str], source: str) -> Vocabulary:
        texts = [w if w in _PUNCTUATION else " " + w for w in words]
        first = list(words)
        return cls(
            texts=texts,
            first_texts=first,
            json=[orjson.dumps(t) for t in texts],
            first_json=[orjson.dumps(t) for t in first],
            source=source,
            words=[w for w in words if w not in _PUNCTUATION],
        )

    @classmethod
    def builtin(cls) -> Vocabulary:
        words = list(dict.fromkeys(_BUILTIN_WORDS))
        return cls.from_words(words + list(_PUNCTUATION), "builtin")

    @classmethod
    def from_tokenizer(cls, tokenizer: Tokenizer) -> Vocabulary:
        """Whole-word tokens with a leading-space marker (byte-level BPE `Ġ`, SentencePiece
        `▁`); falls back to the built-in words when a vocabulary has too few of them."""
        words: list[str] = []
        for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1]):
            if token[:1] in ("Ġ", "▁") and _WORD_TOKEN.match(token[1:]):
                words.append(token[1:])
                if len(words) >= _MAX_TOKENIZER_WORDS:
                    break
        if len(words) < _MIN_TOKENIZER_WORDS:
            return cls.builtin()
        return cls.from_words(words + list(_PUNCTUATION), "tokenizer")
