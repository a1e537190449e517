"""`arks down`: stop the stack an `arks up` runs (in the background or another terminal);
and `clean_stale`, which `arks up` runs first to stop what a killed stack left behind.

It sends SIGTERM to the `arks up` recorded in `.arks/state.json`, which then stops
everything in order, and waits for it. If that process is gone (killed) or does not
finish in time, the processes the state file records are killed directly, each only if
it is still the same process (pid and start time).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

from arks_cli import processes
from arks_cli.console import Console
from arks_cli.errors import CliError
from arks_cli.stack_state import (
    ProcessRecord,
    StackState,
    find_state_dir,
    read_state,
    remove_state,
)

POLL = 0.2


def main(args: argparse.Namespace) -> int:
    root = Path(args.dir).resolve() if args.dir else find_state_dir()
    state = read_state(root) if root is not None else None
    if root is None or state is None:
        raise CliError("no stack to stop: no .arks/state.json here or in a parent directory")
    return asyncio.run(_stop(root, state, float(args.timeout), Console()))


async def _stop(root: Path, state: StackState, grace: float, console: Console) -> int:
    supervisor = ProcessRecord(
        name="arks up", pid=state.supervisor_pid, create_time=state.supervisor_create_time
    )
    if processes.signal_record(supervisor, signal.SIGTERM, group=False):
        console.info(f"stopping the stack of {root} (arks up, pid {supervisor.pid})")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while processes.alive(supervisor) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(POLL)
        if not processes.alive(supervisor):
            console.info("stopped")
            return 0
        console.warn(f"arks up did not stop within {grace:.0f}s; killing the stack")
        processes.signal_record(supervisor, signal.SIGKILL, group=False)
    leftovers = [r for r in (*state.processes, *state.descendants) if processes.alive(r)]
    for record in leftovers:
        processes.signal_record(record, signal.SIGKILL, group=True)
    remove_state(root)
    console.info(f"killed {len(leftovers)} processes of the stack" if leftovers else "stopped")
    return 0


def clean_stale(root: Path, console: Console) -> None:
    """Refuse when a stack runs from `root`; stop what a killed one left behind."""
    state = read_state(root)
    if state is None:
        return
    supervisor = ProcessRecord(
        name="arks up", pid=state.supervisor_pid, create_time=state.supervisor_create_time
    )
    if supervisor.pid != os.getpid() and processes.alive(supervisor):
        raise CliError(
            f"a stack already runs from {root} (pid {supervisor.pid}); "
            "stop it with `arks down` or Ctrl-C in its terminal"
        )
    leftovers = [r for r in (*state.processes, *state.descendants) if processes.alive(r)]
    for record in leftovers:
        processes.signal_record(record, signal.SIGKILL, group=True)
    if leftovers:
        names = ", ".join(sorted({r.name for r in leftovers}))
        console.info(f"stopped {len(leftovers)} processes left by an earlier `arks up` ({names})")
    remove_state(root)
