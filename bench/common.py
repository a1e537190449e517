"""What every benchmark shares: where results go, free ports, process helpers and
percentile arithmetic. A benchmark module exposes `async def run(ctx) -> dict`."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"


@dataclass
class BenchContext:
    """Handed to every benchmark: a scratch directory and a quick flag for smoke runs."""

    name: str
    workdir: Path
    quick: bool = False
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        print(f"[{self.name}] {text}", flush=True)
        self.notes.append(text)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; benchmarks report p50/p99 of raw samples."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100.0 * (len(ordered) - 1))))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def venv_bin(name: str) -> str:
    """A console script of the workspace virtualenv (the one running this benchmark)."""
    return str(Path(sys.executable).parent / name)


@asynccontextmanager
async def process(
    argv: Sequence[str],
    *,
    log: Path,
    env: dict[str, str] | None = None,
    cpu: int | None = None,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run a child process for the duration of the block, optionally pinned to one core
    with `taskset`, and always terminate it (then kill it) on the way out."""
    full = list(argv)
    if cpu is not None and shutil.which("taskset"):
        full = ["taskset", "-c", str(cpu), *full]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        proc = await asyncio.create_subprocess_exec(
            *full,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
