"""The accountant's own Redis/Valkey keys and NATS KV keys, beside those of `arks_common.ledger`.

Quota counters, reservations and done-markers of requests with a quota follow
`arks_common.ledger` (shared with the router). The accountant adds:

    arks:acct:{ns/q}                      hash: the account of a quota (mirror of its ledger entry)
    arks:acct:{ns}:token:<token>          hash: the account of a token's requests without a quota
    arks:done:{ns}:<request-id>           marker: a request without a quota was applied
    arks:prices:{ns/q}:<price-version>    the price list of one version (to re-bill a duplicate)
    arks:usage:{ns}:token:<token>         hash: lifetime usage of a token (all its requests)
    arks:usage:{ns}:endpoint:<endpoint>   hash: lifetime usage of an endpoint
    arks:usage:{ns}:quota:<quota>         hash: lifetime usage charged to a quota
    arks:usage:{ns}:all                   hash: lifetime usage of the namespace
    arks:usage:{ns}:tokens|endpoints|quotas   sets: the names above, for listing
    arks:usage:namespaces                 set: namespaces with usage
    arks:accountant:epoch                 sentinel: which restore of the ledger Valkey holds
    arks:accountant:restore-lock          lease of the accountant restoring Valkey

Usage hash fields: `requests`, `prompt`, `cached`, `completion`, `total` (tokens) and
`cost_nanos:<CUR>` (money in 1e-9 units of currency CUR, one field per currency).

Account hash fields (the ledger entry's `fields`): `ver` (bumped by every script that
touches the account), `sp`/`se` (period and exhaustion the last notice was decided
for), `p:<period>:<kind>` (used per period and kind), `a:<field>` (lifetime usage of
the account), `t:<token>:<field>` and `e:<endpoint>:<field>` (lifetime usage by token
and endpoint). Every field but `sp` holds an integer.

NATS KV `arks-ledger`: key `<ns>.<quota>` for a quota account, `<ns>._token.<token>`
for a token's requests without a quota (Kubernetes names never contain `_`, so the two
cannot collide), and `_meta.epoch` for the restore epoch.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from arks_common import ledger, subjects

EPOCH_KEY: Final = "arks:accountant:epoch"
RESTORE_LOCK_KEY: Final = "arks:accountant:restore-lock"
ACCOUNT_HASH_PATTERN: Final = "arks:acct:*"
NAMESPACES_KEY: Final = "arks:usage:namespaces"
LEDGER_META_EPOCH: Final = "_meta.epoch"
_NO_QUOTA_MARK: Final = "_token"

USAGE_FIELDS: Final = ("requests", "prompt", "cached", "completion", "total")
COST_FIELD_PREFIX: Final = "cost_nanos:"
KINDS: Final = (
    ledger.QuotaKind.PROMPT,
    ledger.QuotaKind.RESPONSE,
    ledger.QuotaKind.TOTAL,
    ledger.QuotaKind.COST,
)

_PERIOD_SLOT: Final = "\x00"


def cost_field(currency: str) -> str:
    return f"{COST_FIELD_PREFIX}{currency}"


def period_field(period: str, kind: str) -> str:
    """Account hash field of one period's used counter."""
    return f"p:{period}:{kind}"


def _split_template(key: str) -> tuple[str, str]:
    prefix, slot, suffix = key.partition(_PERIOD_SLOT)
    if not slot:
        raise AssertionError(f"ledger key layout changed: no period slot in {key!r}")
    return prefix, suffix


def counter_prefix(namespace: str, quota: str) -> str:
    """The part of a quota's used/reserved counter keys before the period id."""
    used, _ = _split_template(ledger.used_key(namespace, quota, _PERIOD_SLOT, KINDS[0]))
    reserved, _ = _split_template(ledger.reserved_key(namespace, quota, _PERIOD_SLOT, KINDS[0]))
    if used != reserved:
        raise AssertionError("ledger key layout changed: used and reserved prefixes differ")
    return used


def _suffixes(builder_kind: str) -> tuple[str, ...]:
    build = ledger.used_key if builder_kind == "used" else ledger.reserved_key
    return tuple(_split_template(build("n", "q", _PERIOD_SLOT, kind))[1] for kind in KINDS)


USED_SUFFIXES: Final = _suffixes("used")
"""`<prefix><period><suffix>` is `ledger.used_key(...)` for each of KINDS."""
RESERVED_SUFFIXES: Final = _suffixes("reserved")


class Account(NamedTuple):
    """Where one request's usage is accounted: its quota, or its token when it has none.

    A named tuple: accounts key dicts on the hot path, and tuples hash and compare in C.
    """

    namespace: str
    quota: str | None
    token: str | None = None

    @classmethod
    def for_usage(cls, namespace: str, quota: str | None, token_name: str) -> Account:
        return cls(namespace, quota) if quota else cls(namespace, None, token_name)

    @property
    def ledger_key(self) -> str:
        if self.quota:
            return subjects.namespaced_key(self.namespace, self.quota)
        return f"{self.namespace}.{_NO_QUOTA_MARK}.{self.token}"

    @property
    def hash_key(self) -> str:
        if self.quota:
            return f"arks:acct:{ledger.quota_tag(self.namespace, self.quota)}"
        return f"arks:acct:{{{self.namespace}}}:token:{self.token}"

    def done_key(self, request_id: str) -> str:
        if self.quota:
            return ledger.applied_key(self.namespace, self.quota, request_id)
        return f"arks:done:{{{self.namespace}}}:{request_id}"

    @property
    def done_prefix(self) -> str:
        """`done_key(id)` is this followed by the id (the SETTLE script builds it)."""
        return self.done_key("")

    @property
    def reservation_prefix(self) -> str:
        """`ledger.reservation_key(ns, quota, id)` is this followed by the id; '' without
        a quota (nothing was reserved)."""
        return ledger.reservation_key(self.namespace, self.quota, "") if self.quota else ""

    @classmethod
    def from_hash_key(cls, key: str) -> Account | None:
        """Inverse of `hash_key`; None for keys that are not account hashes."""
        prefix = "arks:acct:{"
        if not key.startswith(prefix):
            return None
        tag, _, rest = key[len(prefix) :].partition("}")
        if not rest:
            namespace, slash, quota = tag.partition("/")
            return cls(namespace, quota) if slash and quota else None
        if rest.startswith(":token:") and len(rest) > len(":token:"):
            return cls(tag, None, rest[len(":token:") :])
        return None

    @classmethod
    def from_ledger_key(cls, key: str) -> Account:
        namespace, _, rest = key.partition(".")
        mark, _, token = rest.partition(".")
        if mark == _NO_QUOTA_MARK and token:
            return cls(namespace, None, token)
        return cls(namespace, rest)


def usage_prefix(namespace: str) -> str:
    return f"arks:usage:{{{namespace}}}:"


def token_usage_key(namespace: str, token: str) -> str:
    return f"{usage_prefix(namespace)}token:{token}"


def endpoint_usage_key(namespace: str, endpoint: str) -> str:
    return f"{usage_prefix(namespace)}endpoint:{endpoint}"


def quota_usage_key(namespace: str, quota: str) -> str:
    return f"{usage_prefix(namespace)}quota:{quota}"


def namespace_usage_key(namespace: str) -> str:
    return f"{usage_prefix(namespace)}all"


def tokens_index_key(namespace: str) -> str:
    return f"{usage_prefix(namespace)}tokens"


def endpoints_index_key(namespace: str) -> str:
    return f"{usage_prefix(namespace)}endpoints"


def quotas_index_key(namespace: str) -> str:
    return f"{usage_prefix(namespace)}quotas"


def prices_key(namespace: str, quota: str, price_version: str) -> str:
    return f"arks:prices:{ledger.quota_tag(namespace, quota)}:{price_version}"
