"""Running `arks` as a process, as a user runs it: for the CLI's tests and the end-to-end
tests of the project (which import it; nothing in the CLI does)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def clean_env() -> dict[str, str]:
    """The caller's environment without anything that picks a platform, a cluster or
    another Arks setting."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ARKS_") and k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")
    }
    return {**env, "PYTHONUNBUFFERED": "1"}


def arks_process(
    *argv: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> Result:
    """`arks *argv` as a process (blocking: call it in a thread from async code)."""
    done = subprocess.run(
        [sys.executable, "-m", "arks_cli", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env if env is not None else clean_env(),
    )
    return Result(done.returncode, done.stdout, done.stderr)
