"""`arks-devcluster serve`: run the dev cluster until SIGTERM/SIGINT.

    arks-devcluster serve [--host 127.0.0.1] [--port 6443] [--kubeconfig-out PATH]
                          [--workdir DIR] [--config FILE] [--api-only]

The API server with the arks.ai and bundled CRDs, the simulated workload controllers and
the kubelet (nodes from `--config`, pods' processes, volumes and logs under `--workdir`);
`--api-only` serves the API alone (no controllers, no kubelet: the benchmark's setting).
With `--kubeconfig-out` a kubeconfig for the server (with the admin token, printed
nowhere else) is written once the port is listening and the nodes are registered, so a
launcher can wait for the file. On a signal every pod's process is stopped before exit.
Exit codes: 0 after a signal, 2 for bad arguments, a bad config or a port that cannot
be bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from arks_devcluster.api import FakeKubeApi
from arks_devcluster.cluster import cluster_crds, running_workloads
from arks_devcluster.kubeconfig import write_kubeconfig
from arks_devcluster.kubelet import ConfigError, load_config
from arks_devcluster.server import serving

log = logging.getLogger("arks_devcluster")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arks-devcluster")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run the API server")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=6443, help="0 picks a free port")
    run.add_argument("--kubeconfig-out", type=Path, help="write a kubeconfig here when ready")
    run.add_argument(
        "--rbac",
        action="store_true",
        help="authenticate tokens and enforce RBAC (the kubeconfig's token is the admin's); "
        "implies --tls",
    )
    run.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS with a self-signed certificate (kubectl sends tokens only over TLS)",
    )
    run.add_argument(
        "--workdir",
        type=Path,
        help="where pods' processes keep volumes and logs (default: a temporary directory)",
    )
    run.add_argument(
        "--config", type=Path, help="nodes and image rules (YAML; default: one 8-GPU node)"
    )
    run.add_argument(
        "--api-only",
        action="store_true",
        help="serve the API alone: no controllers, no kubelet",
    )
    run.add_argument(
        "--no-tcp-nodelay",
        action="store_true",
        help="leave Nagle's algorithm on (the benchmark's baseline only: ~40 ms per request)",
    )
    return parser


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    token = secrets.token_urlsafe(24)
    config = load_config(args.config)
    api = FakeKubeApi(rbac=args.rbac, admin_token=token, crds=cluster_crds())
    nodelay = not args.no_tcp_nodelay
    tls = args.tls or args.rbac
    async with contextlib.AsyncExitStack() as stack:
        running = await stack.enter_async_context(
            serving(api, host=args.host, port=args.port, nodelay=nodelay, tls=tls)
        )
        if not args.api_only:
            workdir = args.workdir or Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="arks-devcluster-"))
            )
            kubelet = await stack.enter_async_context(running_workloads(api, config, workdir))
            await kubelet.registered()
        url = running.url
        if args.kubeconfig_out is not None:
            write_kubeconfig(args.kubeconfig_out, url, token, ca_pem=running.ca_pem)
        log.info("dev cluster listening on %s", url)
        await stop.wait()
        log.info("stopping the dev cluster")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        asyncio.run(_serve(args))
    except ConfigError as exc:
        log.error("bad dev cluster config: %s", exc)
        return 2
    except OSError as exc:
        log.error("cannot serve on %s:%s: %s", args.host, args.port, exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
