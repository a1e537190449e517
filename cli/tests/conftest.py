"""Helpers for the CLI tests: run `arks` in-process against the test's real NATS."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil
import pytest

from arks_cli.__main__ import main
from arks_cli.stack_state import StackState, read_state
from arks_cli.testing import Result, arks_process, clean_env

__all__ = ["Result", "arks_process", "clean_env"]

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart" / "local.yaml"


Arks = Callable[..., Awaitable[Result]]


@pytest.fixture
def arks(
    nats_server: object,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Arks:
    """`await arks("get", "am")`: the CLI's exit code, stdout and stderr.

    The command runs in a worker thread (it has its own event loop, as from a shell),
    pointed at the test's nats-server through ARKS_NATS__URL.
    """
    monkeypatch.setenv("ARKS_NATS__URL", nats_server.url)  # type: ignore[attr-defined]
    monkeypatch.delenv("ARKS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    return in_process(capsys)


def in_process(capsys: pytest.CaptureFixture[str], *prefix: str) -> Arks:
    """Run `arks *prefix *argv` in a worker thread (its own event loop, as from a shell),
    capturing what it prints."""

    async def run(*argv: str) -> Result:
        capsys.readouterr()
        code = await asyncio.to_thread(main, [*prefix, *argv])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll `predicate` (something outside this event loop: a process, a file) for 20 s."""
    async with asyncio.timeout(20.0):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.05)


# ---------------------------------------------------------------- whole stacks (`arks up`)
ARKS = [sys.executable, "-m", "arks_cli"]
FREE_PORTS = ["--nats-port", "0", "--valkey-port", "0", "--router-port", "0"]
START_TIMEOUT = 90.0


def stack_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARKS_")}
    env["ARKS_LOCAL__SIM_TIME_SCALE"] = "50"
    return env


async def ready_state(root: Path, proc: asyncio.subprocess.Process) -> StackState:
    async with asyncio.timeout(START_TIMEOUT):
        while True:
            state = read_state(root)
            if state is not None and state.ready:
                return state
            if proc.returncode is not None:
                pytest.fail(f"arks up exited with {proc.returncode} before it was ready")
            await asyncio.sleep(0.1)


def process_tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def survivors(procs: list[psutil.Process]) -> list[str]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{proc.pid} {proc.name()}")
        except psutil.NoSuchProcess:
            continue
    return alive
