"""Who may do what on NATS and Valkey: the one place Arks's least-privilege rules live.

Every service connects as its own user. A `NatsRole` says what its user may publish and
subscribe to, built from `arks_common.subjects` names and the JetStream API subjects
nats-py uses for them (`$JS.API.STREAM.INFO.<stream>`, `$JS.API.CONSUMER.CREATE.<stream>.>`,
`$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`, `$JS.ACK.<stream>.>`, `$KV.<bucket>.>`, ...),
and which streams and buckets the service owns: only an owner creates or updates them
(`messaging.Bus.ensure_topology(role)`); nobody but the admin may delete or purge a
stream. Each user gets its own reply-inbox prefix (`_INBOX_<user>`) and may subscribe
only below it, so no user can read another's replies. A `ValkeyRole` is an ACL rule
list: key patterns derived from `arks_common.ledger`'s key functions, and commands.

`render_nats_authorization()` writes the nats-server `authorization { users = [...] }`
block with bcrypt hashes, `render_valkey_acl()` a Valkey ACL file with SHA-256 hashes
(and `default` locked behind a password nobody is given): neither file holds a plaintext
password.
docs/security.md has the resulting table.

Failure modes: a role that lacks a permission its service needs shows as a NATS
"permissions violation" (logged by `messaging.Bus`, and the operation times out or fails)
or a Valkey NOPERM error. `libs/arks_common/tests/test_access*.py` check each user
against real brokers, `services/router/tests/test_credentials.py` the router's scripts,
and `cli/tests/test_up.py` every real service under its user.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import bcrypt
from pydantic import SecretStr

from arks_common import ledger, subjects
from arks_common.embedded import ValkeyAuth
from arks_common.resources import PLURALS
from arks_common.settings import NatsSettings, RedisSettings

JS_API: Final = "$JS.API"
JS_ACK: Final = "$JS.ACK"
JS_FC: Final = "$JS.FC"
KV_STREAM_PREFIX: Final = "KV_"
KV_SUBJECT_PREFIX: Final = "$KV"

ROUTER: Final = "router"
RECONCILER: Final = "reconciler"
ACCOUNTANT: Final = "accountant"
MODEL_CACHE: Final = "model-cache"
BILLING: Final = "billing"
ADMIN: Final = "admin"

BCRYPT_COST: Final = 10
"""Passwords are 256-bit random strings, so the hash's cost only has to defeat a
dictionary; 10 keeps each authenticated connection cheap for nats-server."""


def inbox_prefix(user: str) -> str:
    """The reply-inbox prefix of a user (`NatsSettings.inbox_prefix`)."""
    return f"_INBOX_{user}"


def kv_stream(bucket: str) -> str:
    return f"{KV_STREAM_PREFIX}{bucket}"


def kv_subject(bucket: str, keys: str = ">") -> str:
    return f"{KV_SUBJECT_PREFIX}.{bucket}.{keys}"


# ----------------------------------------------------------------------------- NATS


@dataclass(frozen=True)
class NatsRole:
    """One NATS user: what it may publish and subscribe to, and what it owns."""

    user: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    streams: tuple[str, ...] = ()
    """Streams this service creates and updates (never deletes)."""
    buckets: tuple[str, ...] = ()
    """KV buckets this service creates."""
    admin: bool = False

    def owns_stream(self, name: str) -> bool:
        return self.admin or name in self.streams

    def owns_bucket(self, bucket: str) -> bool:
        return self.admin or bucket in self.buckets


@dataclass
class _Grants:
    publish: list[str] = field(default_factory=list)
    subscribe: list[str] = field(default_factory=list)
    streams: list[str] = field(default_factory=list)
    buckets: list[str] = field(default_factory=list)

    def pub(self, *subjects_: str) -> _Grants:
        self.publish.extend(s for s in subjects_ if s not in self.publish)
        return self

    def sub(self, *subjects_: str) -> _Grants:
        self.subscribe.extend(s for s in subjects_ if s not in self.subscribe)
        return self

    def api(self, *operations: str) -> _Grants:
        return self.pub(*(f"{JS_API}.{op}" for op in operations))

    # ---------------------------------------------------------------- streams
    def own_stream(self, stream: str) -> _Grants:
        """Create and update (not delete or purge) a stream."""
        self.streams.append(stream)
        return self.api(
            f"STREAM.INFO.{stream}", f"STREAM.CREATE.{stream}", f"STREAM.UPDATE.{stream}"
        )

    def publish_to(self, *subjects_: str) -> _Grants:
        """Publish (core or JetStream: the ack comes to the user's inbox)."""
        return self.pub(*subjects_)

    def consume(self, stream: str, consumer: str) -> _Grants:
        """Create, bind and read one durable pull consumer; ack, nak and term its messages."""
        return self.api(
            f"STREAM.INFO.{stream}",
            f"CONSUMER.CREATE.{stream}.{consumer}",
            f"CONSUMER.CREATE.{stream}.{consumer}.>",
            f"CONSUMER.DURABLE.CREATE.{stream}.{consumer}",
            f"CONSUMER.INFO.{stream}.{consumer}",
            f"CONSUMER.MSG.NEXT.{stream}.{consumer}",
        ).pub(f"{JS_ACK}.{stream}.{consumer}.>")

    def dead_letter(self, stream: str) -> _Grants:
        """Send messages of `stream` that cannot be processed to ARKS_DLQ."""
        self.own_stream(subjects.DLQ_STREAM)
        return self.pub(subjects.dlq_subject(stream))

    # ---------------------------------------------------------------- KV buckets
    def read_bucket(self, bucket: str) -> _Grants:
        """Get keys, and watch the bucket (an ordered push consumer into the inbox)."""
        stream = kv_stream(bucket)
        return self.api(
            f"STREAM.INFO.{stream}",
            f"STREAM.MSG.GET.{stream}",
            f"DIRECT.GET.{stream}",
            f"DIRECT.GET.{stream}.>",
            f"CONSUMER.CREATE.{stream}",
            f"CONSUMER.CREATE.{stream}.>",
            f"CONSUMER.INFO.{stream}.>",
            f"CONSUMER.DELETE.{stream}.>",
        ).pub(f"{JS_FC}.{stream}.>")

    def write_bucket(self, bucket: str, keys: str = ">") -> _Grants:
        """Put, update (compare-and-set), delete and purge keys matching `keys`."""
        return self.pub(kv_subject(bucket, keys))

    def own_bucket(self, bucket: str) -> _Grants:
        stream = kv_stream(bucket)
        self.buckets.append(bucket)
        self.api(f"STREAM.CREATE.{stream}", f"STREAM.UPDATE.{stream}")
        return self.read_bucket(bucket).write_bucket(bucket)

    def role(self, user: str) -> NatsRole:
        return NatsRole(
            user=user,
            publish=tuple(self.publish),
            subscribe=(f"{inbox_prefix(user)}.>", *self.subscribe),
            streams=tuple(dict.fromkeys(self.streams)),
            buckets=tuple(dict.fromkeys(self.buckets)),
        )


def _router() -> NatsRole:
    grants = _Grants()
    for bucket in (
        subjects.ROUTES_BUCKET,
        subjects.TOKENS_BUCKET,
        subjects.QUOTAS_BUCKET,
        subjects.QUOTA_STATE_BUCKET,
    ):
        grants.read_bucket(bucket)
    grants.sub(subjects.LOAD_ALL, subjects.QUOTA_STATE_ALL)
    # Usage events: published into ARKS_USAGE, which the accountant owns (while it is
    # missing the router spools them).
    grants.publish_to(subjects.USAGE_ALL)
    return grants.role(ROUTER)


def _reconciler() -> NatsRole:
    grants = _Grants()
    for bucket in (
        subjects.RESOURCES_BUCKET,
        subjects.ROUTES_BUCKET,
        subjects.TOKENS_BUCKET,
        subjects.QUOTAS_BUCKET,
        subjects.REPLICAS_BUCKET,
    ):
        grants.own_bucket(bucket)
    grants.own_stream(subjects.MODEL_JOBS_STREAM).publish_to(subjects.MODEL_JOBS_ALL)
    grants.own_stream(subjects.RESOURCE_EVENTS_STREAM).publish_to(subjects.RESOURCE_STATUS_ALL)
    grants.consume(subjects.MODEL_EVENTS_STREAM, subjects.RECONCILER_MODEL_EVENTS_CONSUMER)
    # It recreates its consumer on start (a fresh read of every model's last event).
    grants.api(
        f"CONSUMER.DELETE.{subjects.MODEL_EVENTS_STREAM}.{subjects.RECONCILER_MODEL_EVENTS_CONSUMER}"
    )
    grants.dead_letter(subjects.MODEL_EVENTS_STREAM)
    grants.publish_to(subjects.LOAD_ALL)
    return grants.role(RECONCILER)


def _accountant() -> NatsRole:
    grants = _Grants()
    grants.own_stream(subjects.USAGE_STREAM)
    grants.consume(subjects.USAGE_STREAM, subjects.ACCOUNTANT_CONSUMER)
    grants.dead_letter(subjects.USAGE_STREAM)
    grants.own_stream(subjects.BILLING_STREAM).publish_to(subjects.BILLING_ALL)
    grants.own_bucket(subjects.LEDGER_BUCKET)
    grants.own_bucket(subjects.QUOTA_STATE_BUCKET)
    grants.publish_to(subjects.QUOTA_STATE_ALL)
    grants.read_bucket(subjects.QUOTAS_BUCKET)
    # ArksQuota status on the local platform: it reads resources (tokens there hold
    # only hashes) and writes ArksQuota objects alone.
    grants.read_bucket(subjects.RESOURCES_BUCKET)
    grants.write_bucket(
        subjects.RESOURCES_BUCKET, subjects.resource_key(PLURALS["ArksQuota"], "*", ">")
    )
    return grants.role(ACCOUNTANT)


def _model_cache() -> NatsRole:
    grants = _Grants()
    grants.consume(subjects.MODEL_JOBS_STREAM, subjects.MODEL_CACHE_CONSUMER)
    grants.dead_letter(subjects.MODEL_JOBS_STREAM)
    grants.own_stream(subjects.MODEL_EVENTS_STREAM)
    grants.publish_to(subjects.MODEL_PROGRESS_ALL, subjects.MODEL_RESULT_ALL)
    return grants.role(MODEL_CACHE)


def _billing() -> NatsRole:
    """Read-only ARKS_BILLING: any consumer of that stream, pull or push, durable or not."""
    stream = subjects.BILLING_STREAM
    grants = _Grants().api(
        "STREAM.NAMES",
        f"STREAM.INFO.{stream}",
        f"CONSUMER.CREATE.{stream}",
        f"CONSUMER.CREATE.{stream}.>",
        f"CONSUMER.DURABLE.CREATE.{stream}.>",
        f"CONSUMER.INFO.{stream}.>",
        f"CONSUMER.DELETE.{stream}.>",
        f"CONSUMER.MSG.NEXT.{stream}.>",
    )
    grants.pub(f"{JS_ACK}.{stream}.>", f"{JS_FC}.{stream}.>")
    return grants.role(BILLING)


def _admin() -> NatsRole:
    return NatsRole(user=ADMIN, publish=(">",), subscribe=(">",), admin=True)


ROLES: Final[Mapping[str, NatsRole]] = {
    role.user: role
    for role in (_router(), _reconciler(), _accountant(), _model_cache(), _billing(), _admin())
}
"""Every NATS user Arks defines, by name."""

SERVICE_USERS: Final[Mapping[str, str]] = {
    "arks-router": ROUTER,
    "arks-reconciler": RECONCILER,
    "arks-accountant": ACCOUNTANT,
    "arks-model-cache": MODEL_CACHE,
}
"""The NATS (and, where it has one, Valkey) user of each service."""


def bcrypt_hash(password: str, cost: int = BCRYPT_COST) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


def render_nats_authorization(passwords: Mapping[str, str]) -> str:
    """The nats-server config block for `passwords` (user → password), bcrypt-hashed."""
    users = []
    for user, password in passwords.items():
        role = ROLES[user]
        secret = bcrypt_hash(password)
        permissions = {
            "publish": {"allow": list(role.publish)},
            "subscribe": {"allow": list(role.subscribe)},
        }
        # JSON is valid nats-server config syntax.
        entry = {"user": user, "password": secret, "permissions": permissions}
        users.append("    " + json.dumps(entry))
    return "authorization {\n  users = [\n" + ",\n".join(users) + "\n  ]\n}\n"


# ----------------------------------------------------------------------------- Valkey


@dataclass(frozen=True)
class ValkeyRole:
    user: str
    rules: tuple[str, ...]


def _router_key_patterns() -> list[str]:
    """The governance keys: rate-limit windows, a quota's applied usage and reservations,
    the reservation hashes, their index and the routers holding them, and the router
    leases. (A script's declared keys count as written
    for the ACL, so `used`, which the router only reads, must be read-write too.)"""
    any_ = "*"
    patterns = [f"~{ledger.RATE_LIMIT_ROOT}{any_}"]
    for kind in ledger.QuotaKind:
        patterns.append(f"~{ledger.used_key(any_, any_, any_, kind)}")
        patterns.append(f"~{ledger.reserved_key(any_, any_, any_, kind)}")
    patterns.append(f"~{ledger.reservation_key(any_, any_, any_)}")
    patterns.append(f"~{ledger.reservation_index_key(any_, any_)}")
    patterns.append(f"~{ledger.reservation_routers_key(any_, any_)}")
    patterns.append(f"~{ledger.ROUTERS_KEY}")
    return patterns


ROUTER_COMMANDS: Final = (
    "ping",
    "select",
    "evalsha",
    "eval",
    "script|load",
    "script|exists",
    # What its scripts call (a test checks these against arks_router.scripts).
    "time",
    "get",
    "incrby",
    "decrby",
    "hget",
    "hmget",
    "hset",
    "hdel",
    "hincrby",
    "del",
    "pexpire",
    "expire",
    "zadd",
    "zrem",
    "zrangebyscore",
    "sadd",
)


def _valkey_roles() -> dict[str, ValkeyRole]:
    router = ValkeyRole(
        ROUTER,
        (
            "resetkeys",
            "resetchannels",
            "-@all",
            *(f"+{c}" for c in ROUTER_COMMANDS),
            *_router_key_patterns(),
        ),
    )
    accountant = ValkeyRole(
        ACCOUNTANT,
        (
            "resetkeys",
            "resetchannels",
            "+@all",
            "-@dangerous",
            # Not dangerous to the ledger: redis-py asks for them when connecting.
            "+client|setinfo",
            "+info",
            f"~{ledger.KEY_ROOT}*",
        ),
    )
    admin = ValkeyRole(ADMIN, ("+@all", "~*", "&*"))
    return {role.user: role for role in (router, accountant, admin)}


VALKEY_ROLES: Final[Mapping[str, ValkeyRole]] = _valkey_roles()
"""Every Valkey user Arks defines (the reconciler and model cache use no Valkey)."""


def render_valkey_acl(passwords: Mapping[str, str]) -> str:
    """A Valkey ACL file: each user with its SHA-256-hashed password, and `default` locked.

    `default` keeps every permission but gets the hash of 256 random bits nobody is
    given, so an unauthenticated client can do nothing (NOAUTH). It cannot simply be
    switched off: Valkey replays its append-only file as `default` and re-checks ACLs at
    each replayed EXEC, so with `default` off every MULTI/EXEC in the file is dropped on
    restart — silently losing quota counters (valkey-io/valkey#3983)."""
    nobody = hashlib.sha256(secrets.token_bytes(32)).hexdigest()
    lines = [f"user default on resetpass #{nobody} ~* &* +@all"]
    for user, password in passwords.items():
        role = VALKEY_ROLES[user]
        digest = hashlib.sha256(password.encode()).hexdigest()
        lines.append(" ".join(["user", user, "on", "resetpass", f"#{digest}", *role.rules]))
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- credentials


def new_password() -> str:
    """256 random bits, URL-safe (usable in a URL, an env var and a config file as is)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Credentials:
    """A password for every NATS user and every Valkey user."""

    nats: Mapping[str, str]
    valkey: Mapping[str, str]

    @classmethod
    def generate(cls) -> Credentials:
        return cls(
            {user: new_password() for user in ROLES},
            {user: new_password() for user in VALKEY_ROLES},
        )

    def nats_authorization(self) -> str:
        return render_nats_authorization(self.nats)

    def valkey_auth(self) -> ValkeyAuth:
        return ValkeyAuth(render_valkey_acl(self.valkey), ADMIN, self.valkey[ADMIN])

    def nats_settings(self, user: str, url: str, **options: float) -> NatsSettings:
        """Settings of a client that logs in as `user`, with that user's inbox prefix."""
        return NatsSettings(
            url=url,
            user=user,
            password=SecretStr(self.nats[user]),
            inbox_prefix=inbox_prefix(user),
            **options,
        )

    def redis_settings(self, user: str, url: str) -> RedisSettings:
        return RedisSettings(url=url, username=user, password=SecretStr(self.valkey[user]))
