"""Containers' processes: started in a session of their own, output to a log file,
stopped as a container runtime stops a container.

Each process leads a new process group (a `bash -c` script's children are in it too).
Stopping sends SIGTERM to the group, waits up to the grace period, then SIGKILL; when
the main process ends by itself, whatever it left in its group is killed, as the end of
a container's cgroup would. `Processes` remembers every live group so that
`kill_all()` can end them synchronously whatever happened to the tasks that own them
(the kubelet's last resort when it stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

from arks_devcluster.kubelet.launch import Launch


class Processes:
    def __init__(self) -> None:
        self.live: set[int] = set()
        """Process group ids of running containers."""

    async def start(self, launch: Launch, log_path: Path) -> asyncio.subprocess.Process:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                *launch.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=launch.env,
                cwd=launch.cwd,
                start_new_session=True,
            )
        self.live.add(proc.pid)
        return proc

    def _signal(self, pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    async def wait(self, proc: asyncio.subprocess.Process) -> int:
        """The exit code once the process ends (its group's leftovers are killed)."""
        code = await proc.wait()
        self._signal(proc.pid, signal.SIGKILL)
        self.live.discard(proc.pid)
        return _exit_code(code)

    async def stop(self, proc: asyncio.subprocess.Process, grace: float) -> int:
        """SIGTERM, then SIGKILL after `grace` seconds; the exit code."""
        if proc.returncode is None:
            self._signal(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), max(grace, 0.0))
            except TimeoutError:
                self._signal(proc.pid, signal.SIGKILL)
        return await self.wait(proc)

    def kill_all(self) -> None:
        for pgid in list(self.live):
            self._signal(pgid, signal.SIGKILL)
        self.live.clear()


def _exit_code(code: int) -> int:
    """A container runtime's exit code: 128 + N for a process ended by signal N."""
    return 128 - code if code < 0 else code
