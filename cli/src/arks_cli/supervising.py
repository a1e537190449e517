"""Supervision of the stack's processes: start them, restart them when they die, stop them.

One mechanism for everything `arks up` keeps running: `Supervised` holds the restart
loop and the stop protocol; `Child` is a service (its console script), and
`brokers.Broker` is nats-server or Valkey (restarted through its own
`arks_common.embedded` server object: same command line, port and data directory).

Each service runs in its own session (so its own process group): Ctrl-C in the
terminal reaches only `arks up`, which then stops the children in order, and
stopping a child signals its whole group, including any helper it forked there.

A process that exits while the stack runs is restarted after a backoff (1 s doubling to
30 s, back to 1 s after 60 s of uptime); the console says so, naming the log, and again
once it runs (`... restarted (pid N)`), and `on_change` lets the launcher rewrite
`.arks/state.json` with the new pid. Stop: no restart after it, and a start in flight
finishes first; a service gets SIGTERM to its group, SIGKILL after the grace period, then
SIGKILL for anything left in the group. `run()` never raises: a process that cannot even
be started is reported and retried like a crash.
"""

from __future__ import annotations

import abc
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
from arks_common.errors import ArksError

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


class Supervised(abc.ABC):
    """The restart loop and the stop protocol every supervised process shares.

    A subclass says how to start its process, wait for its exit and terminate it; the
    backoff, the console lines and the state-file updates (`on_change`) are here, once.
    A process already running when `run()` begins (a broker started during start-up)
    is adopted rather than started twice.
    """

    def __init__(
        self, name: str, log_path: Path, console: Console, on_change: Callable[[], None]
    ) -> None:
        self._name = name
        self.log_path = log_path
        self.console = console
        self.on_change = on_change
        self.starts = 0
        self.exits = 0
        """Unexpected exits so far."""
        self.last_exit = ""
        self._stopping = False
        self._wake = asyncio.Event()
        # Held while a start is in flight, so stop() never races a (re)start.
        self._starting = asyncio.Lock()

    @property
    def name(self) -> str:
        return self._name

    def stopping(self) -> bool:
        return self._stopping

    @property
    @abc.abstractmethod
    def pid(self) -> int | None:
        """The running process's pid, None while it is not running."""

    @abc.abstractmethod
    async def _start(self) -> None:
        """Start the process; OSError or ArksError when it cannot."""

    @abc.abstractmethod
    async def _wait(self) -> int:
        """Until the process exits: its return code (negative: killed by a signal)."""

    @abc.abstractmethod
    async def _terminate(self, grace: float, force: asyncio.Event | None) -> None:
        """Stop the process for good within `grace` (at once once `force` is set)."""

    async def run(self) -> None:
        """Keep the process running until `stop()`."""
        loop = asyncio.get_running_loop()
        backoff = BACKOFF_INITIAL
        adopt = self.pid is not None
        while not self._stopping:
            if not adopt:
                try:
                    async with self._starting:
                        if self.stopping():  # stop() came while we waited for the lock
                            break
                        await self._start()
                except (OSError, ArksError) as exc:
                    self.console.warn(
                        f"{self.name} could not start: {exc}; retrying in {backoff:.0f}s "
                        f"(log: {self.log_path})"
                    )
                    await self._pause(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    continue
                if self.exits:
                    self.console.info(f"{self.name} restarted (pid {self.pid})")
            adopt = False
            self.starts += 1
            self.on_change()
            started = loop.time()
            code = await self._wait()
            if self.stopping():
                break
            uptime = loop.time() - started
            self.exits += 1
            self.last_exit = _how(code)
            if uptime >= BACKOFF_RESET_AFTER:
                backoff = BACKOFF_INITIAL
            self.console.warn(
                f"{self.name} {_how(code)} after {uptime:.1f}s; restarting in "
                f"{backoff:.0f}s (log: {self.log_path})"
            )
            self.on_change()
            await self._pause(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def stop(self, grace: float, force: asyncio.Event | None = None) -> None:
        """Stop for good: no restart after this, and the process is terminated."""
        self._stopping = True
        self._wake.set()
        async with self._starting:
            await self._terminate(grace, force)


class Child(Supervised):
    """A supervised service (see the module docstring)."""

    def __init__(
        self, spec: ChildSpec, console: Console, on_change: Callable[[], None] = lambda: None
    ) -> None:
        super().__init__(spec.name, spec.log_path, console, on_change)
        self.spec = spec
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        proc = self.proc
        return proc.pid if proc is not None and proc.returncode is None else None

    async def _start(self) -> None:
        self.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.spec.log_path.open("ab") as log:
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            log.write(f"--- arks up: starting {self.name} at {stamp}\n".encode())
            log.flush()
            self.proc = await asyncio.create_subprocess_exec(
                *self.spec.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.spec.env,
                cwd=self.spec.cwd,
                start_new_session=True,
            )

    async def _wait(self) -> int:
        assert self.proc is not None
        return await self.proc.wait()

    async def _terminate(self, grace: float, force: asyncio.Event | None) -> None:
        """SIGTERM the group, SIGKILL after `grace` (or once `force` is set), then sweep
        what is left in the group."""
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
