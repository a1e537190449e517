"""Unit properties of the KV block pool (reference counts, prefix reuse, LRU eviction)
and of prompt hashing (equal prefixes give equal leading block hashes)."""

from __future__ import annotations

import orjson
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from arks_engine_sim.generating import plan_output
from arks_engine_sim.kv_caching import BlockPool
from arks_engine_sim.tokenizing import ApproxTokenCounter, HfTokenCounter, hash_token_ids
from arks_engine_sim.vocabulary import Vocabulary


def cached_prompt(pool: BlockPool, digests: list[int]) -> list[int]:
    blocks = pool.allocate(len(digests))
    assert blocks is not None
    for block, digest in zip(blocks, digests, strict=True):
        pool.register(block, digest)
    return blocks


def test_usage_counts_referenced_blocks_only():
    pool = BlockPool(8, 16, prefix_caching=True)
    blocks = cached_prompt(pool, [1, 2, 3])
    assert pool.usage == pytest.approx(3 / 8)
    pool.release(blocks)
    # Released prompt blocks stay findable but are free capacity (vLLM's definition).
    assert pool.usage == 0.0
    assert pool.num_cached == 3
    assert len(pool.match([1, 2, 3, 4], limit=10)) == 3


def test_match_stops_at_first_miss_and_respects_limit():
    pool = BlockPool(8, 16, prefix_caching=True)
    cached_prompt(pool, [10, 11, 12])
    assert len(pool.match([10, 11, 99, 12], limit=10)) == 2
    assert len(pool.match([10, 11, 12], limit=1)) == 1
    assert pool.match([99, 10], limit=10) == []


def test_shared_blocks_are_reference_counted():
    pool = BlockPool(4, 16, prefix_caching=True)
    first = cached_prompt(pool, [1, 2])
    hits = pool.match([1, 2], limit=2)
    assert pool.can_allocate(2, hits)
    pool.take(hits)
    pool.release(first)
    assert pool.num_used == 2  # still held by the second user
    pool.release(hits)
    assert pool.num_used == 0


def test_reviving_evictable_blocks_reduces_what_can_be_allocated():
    pool = BlockPool(4, 16, prefix_caching=True)
    pool.release(cached_prompt(pool, [1, 2]))
    hits = pool.match([1, 2], limit=2)
    assert pool.num_free == 4
    assert pool.can_allocate(2, hits)
    assert not pool.can_allocate(3, hits)  # 4 free, but 2 of them are the hits


def test_eviction_is_lru_and_drops_request_tails_first():
    pool = BlockPool(4, 16, prefix_caching=True)
    pool.release(cached_prompt(pool, [1, 2]))  # prefix blocks, tail (2) released first
    fresh = pool.allocate(2)
    assert fresh is not None
    assert len(pool.match([1, 2], limit=2)) == 2  # the free list was used first
    more = pool.allocate(1)
    assert more is not None
    assert len(pool.match([1, 2], limit=2)) == 1  # the tail block went first
    assert pool.allocate(2) is None  # 1 left: never over-allocates
    assert pool.allocate(1) is not None
    assert pool.match([1, 2], limit=2) == []


def test_duplicate_registration_keeps_the_first_block():
    pool = BlockPool(4, 16, prefix_caching=True)
    first = cached_prompt(pool, [7])
    second = cached_prompt(pool, [7])
    assert pool.match([7], limit=1) == first
    pool.release(second)  # unhashed duplicate goes straight back to the free list
    assert pool.num_cached == 1


def test_prefix_caching_off_never_matches():
    pool = BlockPool(4, 16, prefix_caching=False)
    pool.release(cached_prompt(pool, [1, 2]))
    assert pool.match([1, 2], limit=2) == []
    assert pool.num_cached == 0


def test_approximate_counter():
    counter = ApproxTokenCounter(block_size=4, caching=True)
    assert counter.count("abcd") == 1
    assert counter.count("abcde") == 2
    assert counter.count("") == 1
    long = counter.encode_sync("x" * 64 + "tail-a", special=True)
    other = counter.encode_sync("x" * 64 + "tail-b and more", special=True)
    assert long.count == 18
    # 64 shared bytes = 16 tokens = 4 blocks of 4 tokens: identical leading hashes.
    assert long.block_hashes[:4] == other.block_hashes[:4]
    assert long.fingerprint != other.fingerprint
    assert counter.encode_sync("x" * 64 + "tail-a", special=True) == long


def test_token_id_hashing_is_prefix_chained():
    a = hash_token_ids([1, 2, 3, 4, 5, 6, 7, 8, 9], 4, caching=True)
    b = hash_token_ids([1, 2, 3, 4, 5, 6, 0, 8, 9], 4, caching=True)
    assert a.count == 9
    assert len(a.block_hashes) == 2  # only full blocks
    assert a.block_hashes[0] == b.block_hashes[0]
    assert a.block_hashes[1] != b.block_hashes[1]
    assert hash_token_ids([1, 2], 4, caching=False).block_hashes == []


def test_hf_counter_counts_with_the_tokenizer(tmp_path):
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, show_progress=False)
    tokenizer.train_from_iterator(["hello world, hello prefix cache"] * 20, trainer)
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    counter = HfTokenCounter(path, block_size=2, caching=True)
    text = "hello world hello prefix"
    encoded = counter.encode_sync(text, special=True)
    assert encoded.count == len(tokenizer.encode(text).ids) == counter.count(text)
    longer = counter.encode_sync(text + " cache", special=True)
    assert longer.block_hashes[: len(encoded.block_hashes) - 1] == encoded.block_hashes[:-1]


def test_output_plans_are_seeded_prefix_consistent_and_clip_at_stops():
    vocab = Vocabulary.builtin()

    def plan(**kwargs):
        values = {
            "material": 1234,
            "max_tokens": 40,
            "ignore_eos": True,
            "stop": (),
            "length_range": (5, 50),
        }
        values.update(kwargs)
        return plan_output(vocab, **values)

    full = plan()
    assert (len(full.tokens), full.finish_reason) == (40, "length")
    assert plan(max_tokens=10).tokens == full.tokens[:10]
    assert plan(material=99).tokens != full.tokens
    natural = plan(ignore_eos=False, length_range=(7, 7))
    assert (len(natural.tokens), natural.finish_reason) == (7, "stop")
    text = full.text(vocab, 40)
    word = text.split()[20]
    stopped = plan(stop=(word,))
    assert stopped.finish_reason == "stop"
    assert stopped.stop_reason == word
    assert stopped.text(vocab, len(stopped.tokens)) == text[: text.index(word)]
    streamed = "".join(
        orjson.loads(stopped.piece_json(vocab, i)) for i in range(len(stopped.tokens))
    )
    assert streamed == text[: text.index(word)]
