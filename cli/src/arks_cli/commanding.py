"""The handlers behind each `arks` subcommand, and their shared plumbing.

Each handler takes the parsed arguments and returns an exit code; user errors are
raised as `CliError` and printed by `__main__`. Handlers that talk to the stack run
on asyncio (`asyncio.run` in `run_command`), each in its own event loop. The resource
commands work on the platform `backends.choose_platform` picks from the flags: the
local stack or a Kubernetes cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from arks_cli import applying, credentials, describing, getting, usage_reporting
from arks_cli.backends import Platform, choose_platform, default_namespace, open_resources
from arks_cli.connecting import open_bus, resolve_targets
from arks_cli.errors import CliError, NotRunningError
from arks_cli.manifests import read_manifests
from arks_cli.stack_state import find_state_dir
from arks_cli.token_creating import TokenRequest, create_token
from arks_common.access import Credentials

PACKAGES = (
    "arks-cli",
    "arks-common",
    "arks-reconciler",
    "arks-router",
    "arks-accountant",
    "arks-model-cache",
    "arks-engine-sim",
    "arks-devcluster",
)


def out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")
    sys.stderr.flush()


def _platform(args: argparse.Namespace) -> Platform:
    return choose_platform(
        getattr(args, "platform", None),
        kubeconfig=getattr(args, "kubeconfig", None),
        context=getattr(args, "context", None),
        nats_url=getattr(args, "nats_url", None),
        redis_url=getattr(args, "redis_url", None),
    )


def _namespace(args: argparse.Namespace, platform: Platform) -> str:
    return str(getattr(args, "namespace", None) or default_namespace(platform))


async def apply(args: argparse.Namespace) -> int:
    platform = _platform(args)
    manifests = read_manifests(list(args.filename), args.namespace, _namespace(args, platform))
    async with open_resources(platform) as resources:
        await applying.apply_manifests(resources, manifests, out)
    return 0


async def get(args: argparse.Namespace) -> int:
    platform = _platform(args)
    query = getting.build_query(
        args.kind, list(args.names), _namespace(args, platform), bool(args.all_namespaces)
    )
    async with open_resources(platform) as resources:
        found = await getting.fetch(resources, query)
    text = getting.render(found, query, args.output)
    if text:
        sys.stdout.write(text)
    elif not found.missing and args.output not in ("yaml", "json", "name"):
        err(getting.nothing_found_message(query))
    for line in found.missing:
        err(line)
    return 1 if found.missing else 0


async def describe(args: argparse.Namespace) -> int:
    platform = _platform(args)
    query = getting.build_query(args.kind, list(args.names), _namespace(args, platform), False)
    if len(query.kinds) != 1:
        raise CliError("describe takes one resource type")
    info = query.kinds[0]
    async with open_resources(platform) as resources:
        found = await getting.fetch(resources, query)
        texts = [
            describing.render(info, obj, await resources.events(info, obj)) for obj in found.objects
        ]
    if texts:
        sys.stdout.write("\n\n".join(texts))
    elif not found.missing:
        err(getting.nothing_found_message(query))
    for line in found.missing:
        err(line)
    return 1 if found.missing else 0


async def delete(args: argparse.Namespace) -> int:
    platform = _platform(args)
    namespace = _namespace(args, platform)
    if args.filename:
        if args.kind or args.names or args.all:
            raise CliError("give either -f FILE or KIND NAME..., not both")
        targets = applying.targets_from_manifests(
            read_manifests(list(args.filename), args.namespace, namespace)
        )
        async with open_resources(platform) as resources:
            await applying.delete_targets(
                resources, targets, ignore_not_found=args.ignore_not_found, echo=out
            )
        return 0
    if not args.kind:
        raise CliError("you must give KIND NAME..., KIND --all, or -f FILE")
    query = getting.build_query(args.kind, list(args.names), namespace, False)
    if len(query.kinds) != 1:
        raise CliError("delete takes one resource type")
    info = query.kinds[0]
    if not query.names and not args.all:
        raise CliError(f"give the names of the {info.plural} to delete, or --all")
    async with open_resources(platform) as resources:
        if args.all:
            targets = await applying.all_targets(resources, info, namespace)
            if not targets:
                err(getting.nothing_found_message(query))
        else:
            targets = [applying.DeleteTarget(info, namespace, n) for n in query.names]
        await applying.delete_targets(
            resources, targets, ignore_not_found=args.ignore_not_found, echo=out
        )
    return 0


async def token_create(args: argparse.Namespace) -> int:
    platform = _platform(args)
    request = TokenRequest(
        name=args.name,
        namespace=_namespace(args, platform),
        endpoints=list(args.endpoint),
        rpm=args.rpm,
        tpm=args.tpm,
        rpd=args.rpd,
        tpd=args.tpd,
        quota=args.quota,
    )
    async with open_resources(platform) as resources:
        for endpoint in request.endpoints:
            if await resources.get("ArksEndpoint", request.namespace, endpoint) is None:
                err(f"warning: ArksEndpoint {request.namespace}/{endpoint} does not exist (yet)")
        if request.quota and (
            await resources.get("ArksQuota", request.namespace, request.quota) is None
        ):
            err(f"warning: ArksQuota {request.namespace}/{request.quota} does not exist (yet)")
        token, label = await create_token(resources, request)
    err(f"{label} created; the token is shown only now:")
    out(token)
    return 0


async def usage(args: argparse.Namespace) -> int:
    platform = _platform(args)
    namespace = None if args.all_namespaces else args.namespace  # all unless -n
    if platform.name == "kubernetes":
        async with open_resources(platform) as resources:
            quotas = await resources.list("ArksQuota", namespace)
        report = usage_reporting.from_quota_status(quotas, by=args.by)
    else:
        targets = resolve_targets(args.nats_url, redis_url=args.redis_url)
        async with open_bus(targets) as bus:
            report = await usage_reporting.collect(
                targets.redis, bus, namespace=namespace, by=args.by
            )
    sys.stdout.write(usage_reporting.render(report))
    return 0


def version(_: argparse.Namespace) -> int:
    lines = []
    for package in PACKAGES:
        try:
            lines.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            lines.append(f"{package} (not installed)")
    out("\n".join(lines))
    return 0


def show_credentials(args: argparse.Namespace) -> int:
    if args.what == "kubernetes":
        docs = credentials.kubernetes_secrets(Credentials.generate(), args.namespace)
        out(yaml.safe_dump_all(docs, sort_keys=False).rstrip("\n"))
        return 0
    if args.what == "compose":
        target = Path(".secrets")
        secrets = credentials.load_or_create(target, err)
        for written in credentials.write_compose_secrets(secrets, target):
            err(f"wrote {written}")
        return 0
    if args.user is None:
        raise CliError(f"arks credentials {args.what} USER: which user?")
    directory = find_state_dir()
    found = credentials.read(directory) if directory is not None else None
    if found is None:
        raise NotRunningError("no .arks/credentials.json here: is `arks up` running?")
    users = found.nats if args.what == "nats" else found.valkey
    if args.user not in users:
        raise CliError(f"no {args.what} user {args.user!r}; users: {', '.join(users)}")
    out(users[args.user])
    return 0


def up(args: argparse.Namespace) -> int:
    from arks_cli import launching  # the launcher pulls in more; only `up` needs it

    return launching.main(args)


def down(args: argparse.Namespace) -> int:
    from arks_cli import stopping

    return stopping.main(args)


def cluster_up(args: argparse.Namespace) -> int:
    from arks_cli import dev_cluster

    return dev_cluster.up(args)


def cluster_down(args: argparse.Namespace) -> int:
    from arks_cli import dev_cluster

    return dev_cluster.down(args)


def cluster_status(args: argparse.Namespace) -> int:
    from arks_cli import dev_cluster

    return dev_cluster.status(args)


ASYNC_HANDLERS: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "apply": apply,
    "get": get,
    "describe": describe,
    "delete": delete,
    "token_create": token_create,
    "usage": usage,
}
SYNC_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "version": version,
    "credentials": show_credentials,
    "up": up,
    "down": down,
    "cluster_up": cluster_up,
    "cluster_down": cluster_down,
    "cluster_status": cluster_status,
}


def run_command(args: argparse.Namespace) -> int:
    name = str(args.handler)
    if name in SYNC_HANDLERS:
        return SYNC_HANDLERS[name](args)
    return asyncio.run(ASYNC_HANDLERS[name](args))


__all__ = ["run_command"]
