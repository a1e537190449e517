"""`arks-devcluster serve`: run the dev cluster's API server until SIGTERM/SIGINT.

    arks-devcluster serve [--host 127.0.0.1] [--port 6443] [--kubeconfig-out PATH]

With `--kubeconfig-out` a kubeconfig for the server (with the admin token, printed
nowhere else) is written once the port is listening, so a launcher can wait for the file.
Exit codes: 0 after a signal, 2 for bad arguments or a port that cannot be bound.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from arks_devcluster.api import FakeKubeApi
from arks_devcluster.kubeconfig import write_kubeconfig
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
    api = FakeKubeApi(rbac=args.rbac, admin_token=token)
    nodelay = not args.no_tcp_nodelay
    tls = args.tls or args.rbac
    async with serving(api, host=args.host, port=args.port, nodelay=nodelay, tls=tls) as running:
        url = running.url
        if args.kubeconfig_out is not None:
            write_kubeconfig(args.kubeconfig_out, url, token, ca_pem=running.ca_pem)
        log.info("dev cluster API server listening on %s", url)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        asyncio.run(_serve(args))
    except OSError as exc:
        log.error("cannot serve on %s:%s: %s", args.host, args.port, exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
