"""`arks up -d`: the same stack, run in its own session, returning once it is ready.

The parent re-runs `arks up` with the same options (plus the internal
`--detached-child`, so the child does not stop when its parent exits) in a new session
with its output in `.arks/logs/arks-up.log`, then polls `.arks/state.json` until the
child reports ready, and prints the router URL and the curl line. If the child exits
during start-up, the tail of its log becomes the error.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path

from arks_cli.console import Console
from arks_cli.errors import CliError
from arks_cli.launching import UpOptions
from arks_cli.service_catalog import StackPaths
from arks_cli.stack_state import read_state
from arks_cli.stopping import clean_stale


def start_detached(args: argparse.Namespace, console: Console) -> int:
    """`arks up -d`: run `arks up` in its own session and return once it is ready."""
    options = UpOptions.from_args(args)
    options.root.mkdir(parents=True, exist_ok=True)
    clean_stale(options.root, console)
    argv = [sys.executable, "-m", "arks_cli", "up", "--detached-child", "--dir", str(options.root)]
    argv += ["--ready-timeout", str(options.ready_timeout)]
    for flag, value in (
        ("--router-port", options.router_port),
        ("--nats-port", options.nats_port),
        ("--valkey-port", options.valkey_port),
        ("--quickstart-file", options.quickstart_file),
    ):
        if value is not None:
            argv += [flag, str(value)]
    if options.no_quickstart:
        argv.append("--no-quickstart")
    for service in options.without:
        argv += ["--without", service]
    if options.kube is not None:
        argv += ["--platform", "kubernetes"]
        if options.kube.kubeconfig:
            argv += ["--kubeconfig", options.kube.kubeconfig]
        if options.kube.context:
            argv += ["--context", options.kube.context]
    log_path = StackPaths(options.root).log("arks-up")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return asyncio.run(_await_detached(proc, options, log_path, console))


async def _await_detached(
    proc: subprocess.Popen[bytes], options: UpOptions, log_path: Path, console: Console
) -> int:
    deadline = asyncio.get_running_loop().time() + 2 * options.ready_timeout + 30
    while asyncio.get_running_loop().time() < deadline:
        if proc.poll() is not None:
            text = await asyncio.to_thread(log_path.read_text, errors="replace")
            tail = text.splitlines()[-15:]
            raise CliError("arks up stopped during start-up:\n" + "\n".join(tail))
        state = read_state(options.root)
        if state is not None and state.supervisor_pid == proc.pid and state.ready:
            console.raw(f"Arks is up in the background (pid {proc.pid}); logs in {log_path.parent}")
            if state.router_url:
                console.raw(f"Router: {state.router_url}")
            if state.hint:
                console.raw("Try it:\n\n" + state.hint + "\n")
            console.raw("Stop it with `arks down`.")
            return 0
        await asyncio.sleep(0.25)
    raise CliError(f"arks up (pid {proc.pid}) is not ready yet; see {log_path}")
