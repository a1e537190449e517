"""Supervision of one service process: start it, restart it when it dies, stop it.

Each child runs in its own session (so its own process group): Ctrl-C in the
terminal reaches only `arks up`, which then stops the children in order, and
stopping a child signals its whole group, including any helper it forked there.

A child that exits while the stack runs is restarted after a backoff (1 s doubling to
30 s, back to 1 s after 60 s of uptime) and the console says so, naming the log. Stop:
SIGTERM to the group, SIGKILL after the grace period, then SIGKILL for anything left in
the group. `run()` never raises: a child that cannot even be spawned is reported and
retried like a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from arks_cli.console import Console

BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0
BACKOFF_RESET_AFTER = 60.0
STRAGGLER_GRACE = 2.0


@dataclass(frozen=True)
class ChildSpec:
    """How to run one service."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path
    ready_url: str | None = None


class Child:
    """A supervised child process (see the module docstring)."""

    def __init__(
        self, spec: ChildSpec, console: Console, on_change: Callable[[], None] = lambda: None
    ) -> None:
        self.spec = spec
        self.console = console
        self.on_change = on_change
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.exits = 0
        """Unexpected exits so far."""
        self.last_exit = ""
        self._stopping = False
        self._wake = asyncio.Event()

    def stopping(self) -> bool:
        return self._stopping

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        proc = self.proc
        return proc.pid if proc is not None and proc.returncode is None else None

    async def _spawn(self) -> asyncio.subprocess.Process:
        self.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.spec.log_path.open("ab") as log:
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            log.write(f"--- arks up: starting {self.name} at {stamp}\n".encode())
            log.flush()
            return await asyncio.create_subprocess_exec(
                *self.spec.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.spec.env,
                cwd=self.spec.cwd,
                start_new_session=True,
            )

    async def run(self) -> None:
        """Keep the child running until `stop()`."""
        loop = asyncio.get_running_loop()
        backoff = BACKOFF_INITIAL
        while not self._stopping:
            try:
                self.proc = await self._spawn()
            except OSError as exc:
                self.console.warn(f"{self.name} could not start: {exc}; retrying in {backoff:.0f}s")
                await self._pause(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            self.starts += 1
            self.on_change()
            started = loop.time()
            code = await self.proc.wait()
            if self.stopping():
                break
            uptime = loop.time() - started
            self.exits += 1
            self.last_exit = _how(code)
            if uptime >= BACKOFF_RESET_AFTER:
                backoff = BACKOFF_INITIAL
            self.console.warn(
                f"{self.name} {_how(code)} after {uptime:.1f}s; restarting in "
                f"{backoff:.0f}s (log: {self.spec.log_path})"
            )
            self.on_change()
            await self._pause(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def stop(self, grace: float, force: asyncio.Event | None = None) -> None:
        """Stop for good: SIGTERM the group, SIGKILL after `grace` (or once `force` is
        set), then sweep what is left in the group."""
        self._stopping = True
        self._wake.set()
        proc = self.proc
        if proc is None:
            return
        loop = asyncio.get_running_loop()
        pgid = proc.pid  # a session leader's pgid is its pid
        if proc.returncode is None:
            _killpg(pgid, signal.SIGTERM)
            deadline = loop.time() + grace
            while proc.returncode is None and loop.time() < deadline:
                if force is not None and force.is_set():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 0.1)
            if proc.returncode is None:
                if grace > 0 and not (force is not None and force.is_set()):
                    self.console.warn(f"{self.name} did not stop within {grace:.0f}s; killing it")
                _killpg(pgid, signal.SIGKILL)
                await proc.wait()
        # Helpers the child forked into its group get a moment, then no choice.
        deadline = loop.time() + (0.0 if force is not None and force.is_set() else STRAGGLER_GRACE)
        while _group_alive(pgid) and loop.time() < deadline:  # noqa: ASYNC110 - polls the OS
            await asyncio.sleep(0.05)
        _killpg(pgid, signal.SIGKILL)


def _how(code: int) -> str:
    """`exited with code 3`, or `was killed by SIGKILL` for a negative return code."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
