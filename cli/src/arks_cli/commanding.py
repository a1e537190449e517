"""The handlers behind each `arks` subcommand, and their shared plumbing.

Each handler takes the parsed arguments and returns an exit code; user errors are
raised as `CliError` and printed by `__main__`. Handlers that talk to the stack run
on asyncio (`asyncio.run` in `run_command`), each in its own event loop.
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
from arks_cli.connecting import open_bus, open_store, resolve_targets
from arks_cli.errors import CliError, NotRunningError
from arks_cli.manifests import read_manifests
from arks_cli.stack_state import find_state_dir
from arks_cli.token_creating import TokenRequest, create_token
from arks_common.access import Credentials

DEFAULT_NAMESPACE = "default"
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


def _namespace(args: argparse.Namespace) -> str:
    return str(getattr(args, "namespace", None) or DEFAULT_NAMESPACE)


async def apply(args: argparse.Namespace) -> int:
    manifests = read_manifests(list(args.filename), args.namespace)
    async with open_store(resolve_targets(args.nats_url)) as store:
        await applying.apply_manifests(store, manifests, out)
    return 0


async def get(args: argparse.Namespace) -> int:
    query = getting.build_query(
        args.kind, list(args.names), _namespace(args), bool(args.all_namespaces)
    )
    async with open_store(resolve_targets(args.nats_url)) as store:
        found = await getting.fetch(store, query)
    text = getting.render(found, query, args.output)
    if text:
        sys.stdout.write(text)
    elif not found.missing and args.output not in ("yaml", "json", "name"):
        err(getting.nothing_found_message(query))
    for line in found.missing:
        err(line)
    return 1 if found.missing else 0


async def describe(args: argparse.Namespace) -> int:
    query = getting.build_query(args.kind, list(args.names), _namespace(args), False)
    if len(query.kinds) != 1:
        raise CliError("describe takes one resource type")
    info = query.kinds[0]
    url = resolve_targets(args.nats_url)
    async with open_store(url) as store:
        found = await getting.fetch(store, query)
        texts = []
        for obj in found.objects:
            history = await describing.recent_events(
                store.bus,
                info,
                obj["metadata"].get("namespace", "default"),
                obj["metadata"]["name"],
            )
            texts.append(describing.render(info, obj, history))
    if texts:
        sys.stdout.write("\n\n".join(texts))
    elif not found.missing:
        err(getting.nothing_found_message(query))
    for line in found.missing:
        err(line)
    return 1 if found.missing else 0


async def delete(args: argparse.Namespace) -> int:
    namespace = _namespace(args)
    if args.filename:
        if args.kind or args.names or args.all:
            raise CliError("give either -f FILE or KIND NAME..., not both")
        targets = applying.targets_from_manifests(
            read_manifests(list(args.filename), args.namespace)
        )
        async with open_store(resolve_targets(args.nats_url)) as store:
            await applying.delete_targets(
                store, targets, ignore_not_found=args.ignore_not_found, echo=out
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
    async with open_store(resolve_targets(args.nats_url)) as store:
        if args.all:
            targets = await applying.all_targets(store, info, namespace)
            if not targets:
                err(getting.nothing_found_message(query))
        else:
            targets = [applying.DeleteTarget(info, namespace, n) for n in query.names]
        await applying.delete_targets(
            store, targets, ignore_not_found=args.ignore_not_found, echo=out
        )
    return 0


async def token_create(args: argparse.Namespace) -> int:
    request = TokenRequest(
        name=args.name,
        namespace=_namespace(args),
        endpoints=list(args.endpoint),
        rpm=args.rpm,
        tpm=args.tpm,
        rpd=args.rpd,
        tpd=args.tpd,
        quota=args.quota,
    )
    async with open_store(resolve_targets(args.nats_url)) as store:
        for endpoint in request.endpoints:
            if await store.get("ArksEndpoint", request.namespace, endpoint) is None:
                err(f"warning: ArksEndpoint {request.namespace}/{endpoint} does not exist (yet)")
        if request.quota and await store.get("ArksQuota", request.namespace, request.quota) is None:
            err(f"warning: ArksQuota {request.namespace}/{request.quota} does not exist (yet)")
        token, label = await create_token(store, request)
    err(f"{label} created; the token is shown only now:")
    out(token)
    return 0


async def usage(args: argparse.Namespace) -> int:
    targets = resolve_targets(args.nats_url, redis_url=args.redis_url)
    namespace = None if args.all_namespaces else args.namespace
    async with open_bus(targets) as bus:
        report = await usage_reporting.collect(targets.redis, bus, namespace=namespace, by=args.by)
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
