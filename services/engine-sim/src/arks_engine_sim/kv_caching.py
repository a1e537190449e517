"""The simulated KV cache: a pool of N blocks of B tokens with a prefix cache, as vLLM's.

- A block is free, in use (reference count > 0), or cached-and-evictable (count 0 but
  still holding a prompt prefix's hash, so a later request can reuse it).
- Requests reuse the longest run of leading blocks whose chained hashes are cached;
  blocks shared by running requests are reference-counted.
- Allocation takes never-hashed free blocks first, then evicts the least recently
  released cached block (LRU). A request's blocks are released tail first, so a shared
  prefix outlives the request-specific tail.
- Usage is vLLM's: 1 - (free + evictable) / N.

All operations are O(blocks touched) and synchronous; the scheduler calls them between
steps. Over-allocation is impossible by construction: `allocate` returns None instead.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class BlockPool:
    def __init__(self, num_blocks: int, block_size: int, *, prefix_caching: bool) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.prefix_caching = prefix_caching
        self._free: list[int] = list(range(num_blocks - 1, -1, -1))
        self._evictable: OrderedDict[int, None] = OrderedDict()
        self._refs = [0] * num_blocks
        self._hash_of: list[int | None] = [None] * num_blocks
        self._by_hash: dict[int, int] = {}

    @property
    def num_free(self) -> int:
        return len(self._free) + len(self._evictable)

    @property
    def num_used(self) -> int:
        return self.num_blocks - self.num_free

    @property
    def num_cached(self) -> int:
        return len(self._by_hash)

    @property
    def usage(self) -> float:
        return 1.0 - self.num_free / self.num_blocks

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    def match(self, hashes: Sequence[int], limit: int) -> list[int]:
        """Blocks holding the longest cached prefix of `hashes` (at most `limit`)."""
        if not self.prefix_caching:
            return []
        found: list[int] = []
        by_hash = self._by_hash
        for digest in hashes[:limit]:
            block = by_hash.get(digest)
            if block is None:
                break
            found.append(block)
        return found

    def can_allocate(self, new_blocks: int, reused: Sequence[int]) -> bool:
        # Reused blocks that sit in the evictable list stop being free once taken.
        revived = sum(1 for b in reused if self._refs[b] == 0)
        return new_blocks <= self.num_free - revived

    def take(self, blocks: Sequence[int]) -> None:
        refs = self._refs
        for block in blocks:
            if refs[block] == 0:
                del self._evictable[block]
            refs[block] += 1

    def allocate(self, count: int) -> list[int] | None:
        if count > self.num_free:
            return None
        out: list[int] = []
        refs = self._refs
        for _ in range(count):
            if self._free:
                block = self._free.pop()
            else:
                block, _ = self._evictable.popitem(last=False)
                digest = self._hash_of[block]
                if digest is not None:
                    del self._by_hash[digest]
                    self._hash_of[block] = None
            refs[block] = 1
            out.append(block)
        return out

    def release(self, blocks: Sequence[int]) -> None:
        refs = self._refs
        for block in reversed(blocks):
            refs[block] -= 1
            if refs[block] == 0:
                if self._hash_of[block] is None:
                    self._free.append(block)
                else:
                    self._evictable[block] = None

    def register(self, block: int, digest: int) -> None:
        """Make a fully computed prompt block findable by its chained hash."""
        if not self.prefix_caching or digest in self._by_hash or self._hash_of[block] is not None:
            return
        self._by_hash[digest] = block
        self._hash_of[block] = digest
