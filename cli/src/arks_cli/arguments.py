"""The `arks` command line: every subcommand, flag and its help text (argparse).

Parsing only: each subcommand sets `handler` to the coroutine/func name that
`commanding` runs. Flags follow kubectl where kubectl has one (`-f`, `-n`, `-A`,
`-o`, `--ignore-not-found`).
"""

from __future__ import annotations

import argparse

from arks_cli.backends import PLATFORM_ENV, PLATFORMS
from arks_cli.getting import OUTPUTS
from arks_cli.service_catalog import SERVICES

DESCRIPTION = """\
Arks on one machine: `arks up` runs NATS, Valkey and every service (what `make run`
does); the other commands manage arks.ai/v1 resources in that stack, or in a
Kubernetes cluster with --platform kubernetes (or --kubeconfig/--context).
"""

EPILOG = """\
examples:
  arks up                                  start the stack, apply the quickstart
  arks get arkapp,aep,am -o wide           applications, endpoints, models
  arks apply -f examples/quickstart/local.yaml
  arks describe arksapplication app-qwen   conditions and recent events
  arks token create alice --endpoint qwen-7b --rpm 60 --quota basic-quota
  arks usage --by token
  arks --kubeconfig ~/.kube/config get arkapp   the same, on a Kubernetes cluster
"""


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nats-url",
        metavar="URL",
        help="NATS of the local stack (default: $ARKS_NATS__URL, then .arks/state.json, "
        "then nats://127.0.0.1:4222)",
    )


def _platform_flags(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--platform, --kubeconfig, --context: before the command (`top`) or after it; the
    subcommand's copy leaves the value alone unless given there (SUPPRESS)."""
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--platform",
        choices=PLATFORMS,
        default=default,
        help=f"local (the `arks up` stack) or kubernetes (default: ${PLATFORM_ENV}, "
        "else kubernetes when --kubeconfig or --context is given, else local)",
    )
    parser.add_argument(
        "--kubeconfig",
        metavar="FILE",
        default=default,
        help="kubeconfig of the cluster (implies --platform kubernetes; "
        "default there: $KUBECONFIG, then ~/.kube/config)",
    )
    parser.add_argument(
        "--context",
        metavar="NAME",
        default=default,
        help="kubeconfig context (implies --platform kubernetes; default: the current one)",
    )


def _namespace_flags(parser: argparse.ArgumentParser, *, all_namespaces: bool) -> None:
    parser.add_argument(
        "-n",
        "--namespace",
        metavar="NS",
        help="namespace (default: default; on Kubernetes the kubeconfig context's)",
    )
    if all_namespaces:
        parser.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arks",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _platform_flags(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    up = commands.add_parser(
        "up",
        help="start NATS, Valkey and every service; apply the quickstart (Ctrl-C stops all)",
        description="Start the local stack in the foreground; Ctrl-C or SIGTERM stops it all.",
    )
    up.add_argument(
        "--dir", default=".arks", metavar="DIR", help="data, logs and state (default: .arks)"
    )
    up.add_argument(
        "--router-port",
        type=int,
        metavar="PORT",
        help="router port (default: 8080, or a free port when 8080 is taken)",
    )
    up.add_argument(
        "--nats-port", type=int, metavar="PORT", help="NATS port (default: 4222 when free)"
    )
    up.add_argument(
        "--valkey-port", type=int, metavar="PORT", help="Valkey port (default: 6379 when free)"
    )
    up.add_argument(
        "--without",
        action="append",
        default=[],
        metavar="SERVICE",
        choices=SERVICES,
        help="do not start this service (e.g. to run it from your debugger); repeatable",
    )
    up.add_argument(
        "--no-quickstart",
        action="store_true",
        help="do not apply examples/quickstart/local.yaml",
    )
    up.add_argument(
        "--quickstart-file",
        metavar="FILE",
        help="manifest applied at start (default: examples/quickstart/local.yaml)",
    )
    up.add_argument(
        "--ready-timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="seconds to wait for services and the quickstart (default: 120)",
    )
    up.add_argument(
        "--detach",
        "-d",
        action="store_true",
        help="run in the background; returns once ready (stop with `arks down`)",
    )
    # Internal: the process `arks up -d` starts; it must outlive its parent.
    up.add_argument("--detached-child", action="store_true", help=argparse.SUPPRESS)
    # --platform kubernetes: the reconciler drives a cluster (default: .arks/kubeconfig)
    _platform_flags(up, top=False)
    up.set_defaults(handler="up")

    down = commands.add_parser("down", help="stop a stack started in the background")
    down.add_argument("--dir", help="the stack's directory (default: the nearest .arks)")
    down.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="seconds before killing (default: 60)",
    )
    down.set_defaults(handler="down")

    apply = commands.add_parser("apply", help="create or update objects from files or stdin")
    apply.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE",
        help="YAML/JSON file, directory, or - for stdin (repeatable)",
    )
    _namespace_flags(apply, all_namespaces=False)
    _connection_flags(apply)
    _platform_flags(apply, top=False)
    apply.set_defaults(handler="apply")

    get = commands.add_parser("get", help="list objects, or show some by name")
    get.add_argument("kind", metavar="KIND", help="kind, plural or short name; a,b for several")
    get.add_argument("names", metavar="NAME", nargs="*")
    _namespace_flags(get, all_namespaces=True)
    get.add_argument("-o", "--output", choices=OUTPUTS, help="wide, yaml, json or name")
    _connection_flags(get)
    _platform_flags(get, top=False)
    get.set_defaults(handler="get")

    describe = commands.add_parser(
        "describe", help="show an object with its conditions and recent events"
    )
    describe.add_argument("kind", metavar="KIND")
    describe.add_argument("names", metavar="NAME", nargs="*")
    _namespace_flags(describe, all_namespaces=False)
    _connection_flags(describe)
    _platform_flags(describe, top=False)
    describe.set_defaults(handler="describe")

    delete = commands.add_parser("delete", help="delete objects by name or from files")
    delete.add_argument("kind", metavar="KIND", nargs="?")
    delete.add_argument("names", metavar="NAME", nargs="*")
    delete.add_argument(
        "-f", "--filename", action="append", metavar="FILE", help="delete what FILE lists"
    )
    delete.add_argument("--all", action="store_true", help="every object of KIND")
    delete.add_argument(
        "--ignore-not-found", action="store_true", help="a missing object is not an error"
    )
    _namespace_flags(delete, all_namespaces=False)
    _connection_flags(delete)
    _platform_flags(delete, top=False)
    delete.set_defaults(handler="delete")

    token = commands.add_parser("token", help="manage ArksTokens")
    token_commands = token.add_subparsers(dest="token_command", metavar="COMMAND")
    create = token_commands.add_parser(
        "create", help="create an ArksToken with a new random token (printed once)"
    )
    create.add_argument("name", metavar="NAME")
    _namespace_flags(create, all_namespaces=False)
    create.add_argument(
        "--endpoint",
        action="append",
        required=True,
        metavar="E",
        help="ArksEndpoint (model name) to grant; repeatable",
    )
    for limit, what in (
        ("rpm", "requests per minute"),
        ("tpm", "tokens per minute"),
        ("rpd", "requests per day"),
        ("tpd", "tokens per day"),
    ):
        create.add_argument(f"--{limit}", type=int, metavar="N", help=what)
    create.add_argument("--quota", metavar="Q", help="ArksQuota charged for the usage")
    _connection_flags(create)
    _platform_flags(create, top=False)
    create.set_defaults(handler="token_create")

    usage = commands.add_parser(
        "usage",
        help="token usage counted by the accountant (on Kubernetes: ArksQuota status)",
    )
    _namespace_flags(usage, all_namespaces=True)
    usage.add_argument(
        "--by",
        choices=("namespace", "token", "endpoint", "quota"),
        default="quota",
        help="group usage by (default: quota)",
    )
    usage.add_argument(
        "--redis-url",
        metavar="URL",
        help="Redis/Valkey of the stack (default: $ARKS_REDIS__URL, then .arks/state.json)",
    )
    _connection_flags(usage)
    _platform_flags(usage, top=False)
    usage.set_defaults(handler="usage")

    secret = commands.add_parser(
        "credentials",
        help="print the password of a NATS or Valkey user of the running stack",
        description="Print one password from .arks/credentials.json (made by `arks up`), "
        "e.g. ARKS_NATS__PASSWORD=$(arks credentials nats billing) for a billing subscriber; "
        "or make the credentials of a Kubernetes or compose deployment.",
    )
    secret.add_argument(
        "what",
        choices=("nats", "valkey", "kubernetes", "compose"),
        help="nats/valkey USER: that user's password; kubernetes: Secret manifests with "
        "new credentials for deploy/ (pipe into kubectl apply -f -); compose: the files "
        "docker-compose.yml reads, into .secrets/ (made once, then reused)",
    )
    secret.add_argument(
        "user", nargs="?", help="router, reconciler, accountant, model-cache, billing, admin"
    )
    secret.add_argument("--namespace", default="arks-system", help="namespace (kubernetes)")
    secret.set_defaults(handler="credentials")

    cluster = commands.add_parser(
        "cluster",
        help="a one-machine Kubernetes for development (API server, controllers, kubelet)",
        description="The dev cluster of docs/dev-cluster.md, run in the background; "
        "use it with KUBECONFIG=.arks/kubeconfig kubectl ...",
    )
    cluster_commands = cluster.add_subparsers(dest="cluster_command", metavar="COMMAND")
    cluster_up = cluster_commands.add_parser(
        "up", help="start the dev cluster and write .arks/kubeconfig"
    )
    cluster_up.add_argument("--dir", default=".arks", metavar="DIR", help="(default: .arks)")
    cluster_up.add_argument(
        "--port", type=int, metavar="PORT", help="API port (default: 6443, or a free one)"
    )
    cluster_up.add_argument(
        "--config", metavar="FILE", help="nodes and image rules (default: one 8-GPU node)"
    )
    cluster_up.add_argument(
        "--rbac", action="store_true", help="authenticate tokens and enforce RBAC (HTTPS)"
    )
    cluster_up.add_argument(
        "--timeout", type=float, default=60.0, metavar="SECONDS", help="(default: 60)"
    )
    cluster_up.set_defaults(handler="cluster_up")
    cluster_down = cluster_commands.add_parser("down", help="stop the dev cluster")
    cluster_down.add_argument("--dir", default=".arks", metavar="DIR", help="(default: .arks)")
    cluster_down.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds before killing (default: 30)",
    )
    cluster_down.set_defaults(handler="cluster_down")
    cluster_status = cluster_commands.add_parser("status", help="is the dev cluster running")
    cluster_status.add_argument("--dir", default=".arks", metavar="DIR", help="(default: .arks)")
    cluster_status.set_defaults(handler="cluster_status")

    version = commands.add_parser("version", help="print the versions of arks")
    version.set_defaults(handler="version")
    return parser
