"""Helpers for the CLI tests: run `arks` in-process against the test's real NATS."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from arks_cli.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart" / "local.yaml"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


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

    async def run(*argv: str) -> Result:
        capsys.readouterr()
        code = await asyncio.to_thread(main, list(argv))
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
