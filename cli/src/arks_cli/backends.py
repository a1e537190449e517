"""Where the resource commands read and write arks.ai objects: the local stack or a cluster.

`apply`, `get`, `describe`, `delete`, `token create` and `usage` work on a `Resources`:
`local_resources.LocalResources` (the NATS KV store of `arks up`) or
`kube_resources.KubeResources` (the Kubernetes API of a kubeconfig). Both speak in
objects as kubectl shows them (dicts) and raise the store's errors (`NotFoundError`,
`AlreadyExistsError`, `InvalidError`, ...) for what the commands report per object;
unreachable servers and refused credentials are `CliError`s already.

Which one a command uses (`choose_platform`): `--platform local|kubernetes`, else
`$ARKS_CLI_PLATFORM`, else `kubernetes` when `--kubeconfig` or `--context` is given,
else `local`. `$KUBECONFIG` alone never switches: it is often set for some other cluster,
and `arks get` should not quietly leave the stack `make run` started. With
`--platform kubernetes`, the kubeconfig is `--kubeconfig`, else what kubectl uses
(`$KUBECONFIG`, `~/.kube/config`), or the service account inside a pod.
"""

from __future__ import annotations

import builtins
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from arks_cli.connecting import open_store, resolve_targets
from arks_cli.describing import EventLine
from arks_cli.errors import CliError
from arks_cli.local_resources import LocalResources
from arks_cli.manifests import Manifest
from arks_common.resources import KindInfo

Obj = dict[str, Any]
PlatformName = Literal["local", "kubernetes"]
PLATFORMS: tuple[PlatformName, ...] = ("local", "kubernetes")
PLATFORM_ENV = "ARKS_CLI_PLATFORM"
DEFAULT_NAMESPACE = "default"


class Resources(Protocol):
    """The arks.ai objects of one platform."""

    async def get(self, kind: str, namespace: str, name: str) -> Obj | None: ...

    async def list(self, kind: str, namespace: str | None) -> list[Obj]:
        """Objects of a kind in one namespace, or in all (None), sorted by namespace/name."""
        ...

    async def apply(self, manifest: Manifest) -> str:
        """Create or update; `created`, `configured` or `unchanged`."""
        ...

    async def create(self, obj: Obj) -> Obj:
        """Create a new object; AlreadyExistsError when the name is taken."""
        ...

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete (or mark for deletion, with finalizers); False when it did not exist."""
        ...

    async def events(self, info: KindInfo, obj: Obj) -> builtins.list[EventLine]:
        """The object's recent events, oldest first."""
        ...


@dataclass(frozen=True)
class Platform:
    """Which platform a command talks to, and how to reach it."""

    name: PlatformName
    nats_url: str | None = None
    redis_url: str | None = None
    kubeconfig: str | None = None
    context: str | None = None


def choose_platform(
    platform: str | None,
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    nats_url: str | None = None,
    redis_url: str | None = None,
) -> Platform:
    """The platform the flags and `$ARKS_CLI_PLATFORM` name (see the module docstring)."""
    chosen = platform or os.environ.get(PLATFORM_ENV) or None
    if chosen is None:
        chosen = "kubernetes" if kubeconfig or context else "local"
    if chosen not in PLATFORMS:
        where = "--platform" if platform else f"${PLATFORM_ENV}"
        raise CliError(f"{where} must be local or kubernetes (got {chosen!r})")
    if chosen == "local" and (kubeconfig or context):
        raise CliError(
            "--kubeconfig and --context are for --platform kubernetes "
            f"(the platform is local{'' if platform else ' from $' + PLATFORM_ENV})"
        )
    if chosen == "kubernetes" and (nats_url or redis_url):
        flag = "--nats-url" if nats_url else "--redis-url"
        raise CliError(f"{flag} is for the local platform; this command talks to Kubernetes")
    name: PlatformName = "kubernetes" if chosen == "kubernetes" else "local"
    path = os.path.expanduser(kubeconfig) if kubeconfig else None  # --kubeconfig=~/...
    return Platform(name, nats_url, redis_url, path, context)


def default_namespace(platform: Platform) -> str:
    """Where objects without a namespace go (known before connecting)."""
    if platform.name == "local":
        return DEFAULT_NAMESPACE
    from arks_cli import kube_resources

    return kube_resources.context_namespace(platform.kubeconfig, platform.context)


@contextlib.asynccontextmanager
async def open_resources(platform: Platform) -> AsyncIterator[Resources]:
    """The platform's objects, connected (CliError when it cannot be reached)."""
    if platform.name == "kubernetes":
        # Imported here: kubernetes-asyncio is slow to import and local commands skip it.
        from arks_cli import kube_resources

        async with kube_resources.open_kube(platform.kubeconfig, platform.context) as kube:
            yield kube
        return
    async with open_store(resolve_targets(platform.nats_url)) as store:
        yield LocalResources(store)
