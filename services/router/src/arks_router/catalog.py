"""The router's in-memory copy of the KV state it serves from.

Four buckets feed it: `arks-routes` (endpoint -> backends), `arks-tokens` (sha256 of a
token -> grants), `arks-quotas` (quota specs) and `arks-quota-state` (latest
exhaustion state per quota). Each watch delivers a full snapshot first, which
*replaces* that bucket's part of the catalog, then single changes. While NATS is away
nothing arrives and the last known state keeps serving.

A value that does not decode is logged and skipped: one bad key must not take the
others down, and the previous good value of that key is dropped rather than kept
(a grant that can no longer be read must not keep granting).

Lookups run on the request path and never await.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from arks_common import subjects
from arks_common.errors import PermanentError
from arks_common.events import (
    QuotaSpec,
    QuotaStateChanged,
    RouteTable,
    TokenGrant,
    decode_as,
)
from arks_common.messaging import KvChange, KvSnapshot, KvUpdate
from arks_router.matching import Request, RouteMatch

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")

Key = tuple[str, str]
"""(namespace, name)"""

TOKEN_INDEX_CHARS = 16


@dataclass(frozen=True)
class Endpoint:
    """A route table with its matchConfigs compiled (`matching`)."""

    table: RouteTable
    matches: tuple[RouteMatch, ...]

    @classmethod
    def of(cls, table: RouteTable) -> Endpoint:
        return cls(table, tuple(RouteMatch.of(m) for m in table.matches))

    @property
    def name(self) -> str:
        return self.table.endpoint

    @property
    def created(self) -> int:
        """Creation time in Unix seconds (0 when the route table does not say)."""
        created = self.table.created_at
        return int(created.timestamp()) if created is not None else 0

    def serves(self, request: Request) -> bool:
        """Whether one of the endpoint's matchConfigs matches the request."""
        return any(match(request) for match in self.matches)


class Catalog:
    def __init__(self) -> None:
        self.routes: dict[Key, Endpoint] = {}
        self.tokens: dict[str, TokenGrant] = {}
        self.quotas: dict[Key, QuotaSpec] = {}
        self.quota_states: dict[Key, QuotaStateChanged] = {}
        self._by_namespace: dict[str, list[Endpoint]] = {}
        self._token_index: dict[str, list[tuple[str, TokenGrant]]] = {}

    # ------------------------------------------------------------------ lookups
    def endpoint(self, namespace: str, name: str) -> Endpoint | None:
        return self.routes.get((namespace, name))

    def token(self, digest: str) -> TokenGrant | None:
        """The grant of a token digest. The index only uses the digest's first 64 bits;
        the full digest is compared in constant time."""
        for stored, grant in self._token_index.get(digest[:TOKEN_INDEX_CHARS], ()):
            if hmac.compare_digest(stored, digest):
                return grant
        return None

    def endpoints_in(self, namespace: str) -> list[Endpoint]:
        return self._by_namespace.get(namespace, [])

    def quota(self, namespace: str, name: str) -> QuotaSpec | None:
        return self.quotas.get((namespace, name))

    def quota_state(self, namespace: str, name: str) -> QuotaStateChanged | None:
        return self.quota_states.get((namespace, name))

    # ------------------------------------------------------------------ updates
    def apply(self, bucket: str, update: KvUpdate) -> None:
        if bucket == subjects.ROUTES_BUCKET:
            self._apply(update, self.routes, _namespaced, self._route)
            self._by_namespace = _group(self.routes.values())
        elif bucket == subjects.TOKENS_BUCKET:
            self._apply(update, self.tokens, str, lambda data: decode_as(TokenGrant, data))
            self._index_tokens(update)
        elif bucket == subjects.QUOTAS_BUCKET:
            self._apply(update, self.quotas, _namespaced, lambda d: decode_as(QuotaSpec, d))
        elif bucket == subjects.QUOTA_STATE_BUCKET:
            self._apply(
                update, self.quota_states, _namespaced, lambda d: decode_as(QuotaStateChanged, d)
            )
        else:
            raise ValueError(f"the catalog does not hold bucket {bucket}")

    def _index_tokens(self, update: KvUpdate) -> None:
        if isinstance(update, KvSnapshot):
            self._token_index = {}
            changed: Iterable[str] = self.tokens
        else:
            changed = (update.key,)
        for digest in changed:
            bucket = [
                entry
                for entry in self._token_index.get(digest[:TOKEN_INDEX_CHARS], [])
                if entry[0] != digest
            ]
            grant = self.tokens.get(digest)
            if grant is not None:
                bucket.append((digest, grant))
            if bucket:
                self._token_index[digest[:TOKEN_INDEX_CHARS]] = bucket
            else:
                self._token_index.pop(digest[:TOKEN_INDEX_CHARS], None)

    @staticmethod
    def _route(data: bytes) -> Endpoint:
        return Endpoint.of(decode_as(RouteTable, data))

    @staticmethod
    def _apply(
        update: KvUpdate,
        target: dict[K, V],
        key_of: Callable[[str], K],
        decode: Callable[[bytes], V],
    ) -> None:
        if isinstance(update, KvSnapshot):
            fresh: dict[K, V] = {}
            for raw_key, data in update.entries.items():
                value = _decoded(raw_key, data, decode)
                if value is not None:
                    fresh[key_of(raw_key)] = value
            target.clear()
            target.update(fresh)
            return
        assert isinstance(update, KvChange)
        key = key_of(update.key)
        value = None if update.value is None else _decoded(update.key, update.value, decode)
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value


def _namespaced(key: str) -> Key:
    return subjects.split_namespaced_key(key)


def _decoded(key: str, data: bytes, decode: Callable[[bytes], V]) -> V | None:
    try:
        return decode(data)
    except PermanentError as exc:
        log.warning("ignoring undecodable KV entry %s: %s", key, exc)
        return None


def _group(endpoints: Iterable[Endpoint]) -> dict[str, list[Endpoint]]:
    grouped: dict[str, list[Endpoint]] = {}
    for endpoint in endpoints:
        grouped.setdefault(endpoint.table.namespace, []).append(endpoint)
    for listed in grouped.values():
        listed.sort(key=lambda e: e.name)
    return grouped
