"""Redis/Valkey clients the way Arks opens them: with the service's ACL user.

`client()` opens a `redis.asyncio.Redis` on `RedisSettings` (URL, username, password,
timeouts); `verify()` asks the server once at start-up whether it takes those
credentials. Credentials the server refuses (WRONGPASS, NOAUTH) or a user not allowed
to run what the service needs (NOPERM) are a PermanentError naming the settings to fix:
retrying cannot help. A server that cannot be reached yet is only logged, since any
service may start before Valkey (each retries on its own).
"""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from arks_common.errors import PermanentError
from arks_common.settings import RedisSettings

log = logging.getLogger(__name__)

REFUSALS = ("WRONGPASS", "NOAUTH", "NOPERM", "invalid username-password", "Authentication")


def refused_message(settings: RedisSettings, detail: str = "") -> str:
    """What to tell an operator whose Valkey credentials were refused."""
    who = f"user {settings.username!r}" if settings.username else "the default user"
    reason = f" ({detail.strip()})" if detail else ""
    return (
        f"Valkey at {settings.url} refused {who}{reason}: "
        "check ARKS_REDIS__USERNAME / ARKS_REDIS__PASSWORD"
    )


def is_refusal(exc: BaseException) -> bool:
    if isinstance(exc, redis.exceptions.AuthenticationError | redis.exceptions.NoPermissionError):
        return True
    return isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith(REFUSALS)


def client(settings: RedisSettings, **options: Any) -> aioredis.Redis:
    """A client on `settings.url` as `settings.username`; `options` go to redis-py."""
    password = settings.password.get_secret_value() if settings.password else None
    options.setdefault("socket_timeout", settings.socket_timeout)
    options.setdefault("socket_connect_timeout", settings.socket_timeout)
    if settings.username is not None:
        options["username"] = settings.username
    if password is not None:
        options["password"] = password
    return aioredis.Redis.from_url(settings.url, **options)


async def verify(connection: aioredis.Redis, settings: RedisSettings) -> None:
    """PING once: PermanentError when the credentials are refused; unreachable is fine."""
    try:
        await connection.ping()
    except redis.exceptions.RedisError as exc:
        if is_refusal(exc):
            raise PermanentError(refused_message(settings, str(exc))) from exc
        log.warning("valkey at %s is not reachable yet: %s", settings.url, exc)
    except OSError as exc:
        log.warning("valkey at %s is not reachable yet: %s", settings.url, exc)
