"""The stack's broker credentials: generated once into `.arks/credentials.json`, mode 0600.

`arks up` calls `load_or_create()`: the first run generates a random password for every
NATS user and every Valkey user of `arks_common.access`; later runs reuse them (a user
added by a newer Arks gets a password then, the others keep theirs). The brokers are
started with the hashes (`.arks/nats.conf`, `.arks/valkey.acl`, also 0600) and each
service gets only its own user's password in its environment (`service_env`). The
other `arks` commands log in as the admin (`admin()`), and a billing subscriber reads
the `billing` user's password from this file.

For the other ways to run Arks, `kubernetes_secrets()` renders the Secrets that
`deploy/` refers to (`arks credentials kubernetes | kubectl apply -f -`) and
`write_compose_secrets()` the files `docker-compose.yml` reads from `.secrets/`.

Failure modes: a file that is not valid JSON or not ours is a CliError naming it (it is
never overwritten: deleting it generates new credentials, which the brokers take at the
next `arks up`); a file readable by others is narrowed to 0600 with a warning.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

from arks_cli.errors import CliError
from arks_common import access
from arks_common.access import Credentials

FILE_NAME = "credentials.json"
PRIVATE = 0o600

NATS_USER_ENV = "ARKS_NATS__USER"
NATS_PASSWORD_ENV = "ARKS_NATS__PASSWORD"
NATS_INBOX_ENV = "ARKS_NATS__INBOX_PREFIX"
REDIS_USERNAME_ENV = "ARKS_REDIS__USERNAME"
REDIS_PASSWORD_ENV = "ARKS_REDIS__PASSWORD"
CREDENTIAL_ENV = (
    NATS_USER_ENV,
    NATS_PASSWORD_ENV,
    NATS_INBOX_ENV,
    REDIS_USERNAME_ENV,
    REDIS_PASSWORD_ENV,
)


def path(root: Path) -> Path:
    return root / FILE_NAME


def write_private(target: Path, text: str) -> None:
    """Replace `target` atomically with a file only its owner can read."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(temporary, PRIVATE)
    temporary.replace(target)


def read(root: Path, warn: Callable[[str], None] | None = None) -> Credentials | None:
    """The stack's credentials, or None when `arks up` has not made any yet."""
    file = path(root)
    try:
        mode = stat.S_IMODE(file.stat().st_mode)
        text = file.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc}") from exc
    if mode & 0o077:
        os.chmod(file, PRIVATE)
        if warn is not None:
            warn(f"{file} was readable by others (mode {mode:o}); it is 0600 now")
    try:
        data = json.loads(text)
        return Credentials(nats=dict(data["nats"]), valkey=dict(data["valkey"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise CliError(
            f"{file} is not a credentials file of arks up ({exc}); move it away and run "
            "`arks up` again to generate new credentials"
        ) from exc


def load_or_create(root: Path, warn: Callable[[str], None] | None = None) -> Credentials:
    """The credentials of the stack in `root`, generated (and saved) the first time."""
    existing = read(root, warn)
    fresh = Credentials.generate()
    if existing is None:
        merged = fresh
    else:
        merged = Credentials(
            nats={**fresh.nats, **existing.nats}, valkey={**fresh.valkey, **existing.valkey}
        )
        if merged == existing:
            return existing
    write_private(
        path(root),
        json.dumps({"nats": dict(merged.nats), "valkey": dict(merged.valkey)}, indent=2) + "\n",
    )
    return merged


def service_env(credentials: Credentials, service: str) -> dict[str, str]:
    """The credential variables of one service: its own NATS user, and its Valkey user
    when it has one. Nothing of any other user."""
    user = access.SERVICE_USERS[service]
    env = {
        NATS_USER_ENV: user,
        NATS_PASSWORD_ENV: credentials.nats[user],
        NATS_INBOX_ENV: access.inbox_prefix(user),
    }
    if user in credentials.valkey:
        env[REDIS_USERNAME_ENV] = user
        env[REDIS_PASSWORD_ENV] = credentials.valkey[user]
    return env


# ----------------------------------------------------------------------------- deployments
NATS_AUTH_SECRET = "arks-nats-auth"
NATS_AUTH_KEY = "auth.conf"
VALKEY_ACL_SECRET = "arks-valkey-acl"
VALKEY_ACL_KEY = "users.acl"
NATS_PASSWORD_KEY = "nats-password"
REDIS_PASSWORD_KEY = "redis-password"


def credentials_secret(user: str) -> str:
    """The Secret (Kubernetes) / env file (compose) holding one user's passwords."""
    return f"arks-{user}-credentials"


def _secret(name: str, namespace: str, data: dict[str, str]) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "arks"},
        },
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def kubernetes_secrets(
    secrets: Credentials, namespace: str = "arks-system"
) -> list[dict[str, object]]:
    """The Secrets `deploy/` refers to: the brokers' auth files (hashes only) and, per
    user, its passwords (`nats-password`, and `redis-password` for Valkey users)."""
    docs = [
        _secret(NATS_AUTH_SECRET, namespace, {NATS_AUTH_KEY: secrets.nats_authorization()}),
        _secret(VALKEY_ACL_SECRET, namespace, {VALKEY_ACL_KEY: secrets.valkey_auth().acl}),
    ]
    for user, password in secrets.nats.items():
        data = {NATS_PASSWORD_KEY: password}
        if user in secrets.valkey:
            data[REDIS_PASSWORD_KEY] = secrets.valkey[user]
        docs.append(_secret(credentials_secret(user), namespace, data))
    return docs


def write_compose_secrets(secrets: Credentials, directory: Path) -> list[Path]:
    """The files docker-compose.yml reads: `nats-auth.conf`, `valkey-users.acl` and one
    `<user>.env` per user with its credential variables, all 0600."""
    written = [directory / "nats-auth.conf", directory / "valkey-users.acl"]
    write_private(written[0], secrets.nats_authorization())
    write_private(written[1], secrets.valkey_auth().acl)
    for user in secrets.nats:
        env = {
            NATS_USER_ENV: user,
            NATS_PASSWORD_ENV: secrets.nats[user],
            NATS_INBOX_ENV: access.inbox_prefix(user),
        }
        if user in secrets.valkey:
            env[REDIS_USERNAME_ENV] = user
            env[REDIS_PASSWORD_ENV] = secrets.valkey[user]
        target = directory / f"{user}.env"
        write_private(target, "".join(f"{k}={v}\n" for k, v in env.items()))
        written.append(target)
    return written
