"""A supervised child is restarted when it dies and its whole group is stopped."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from pathlib import Path

import psutil

from arks_cli.console import Console
from arks_cli.supervising import Child, ChildSpec
from cli.tests.conftest import wait_until


def _spec(tmp_path: Path, code: str) -> ChildSpec:
    return ChildSpec(
        name="fake-service",
        argv=[sys.executable, "-c", code],
        env=dict(os.environ),
        log_path=tmp_path / "logs" / "fake-service.log",
        cwd=tmp_path,
    )


async def test_a_crashing_child_is_restarted_and_the_console_says_so(tmp_path: Path) -> None:
    errors = io.StringIO()
    child = Child(
        _spec(tmp_path, "print('starting', flush=True); raise SystemExit(3)"),
        Console(io.StringIO(), errors),
    )
    async with asyncio.TaskGroup() as tg:
        tg.create_task(child.run())
        await wait_until(lambda: child.starts >= 2)
        await child.stop(grace=5.0)
    warnings = errors.getvalue()
    assert "fake-service exited with code 3" in warnings
    assert "restarting in 1s" in warnings
    assert str(child.spec.log_path) in warnings
    log = child.spec.log_path.read_text()
    assert log.count("starting") >= 2
    assert log.count("--- arks up: starting fake-service") >= 2


async def test_stop_kills_a_child_that_ignores_sigterm_and_its_group(tmp_path: Path) -> None:
    code = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "helper = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
        "print(helper.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    errors = io.StringIO()
    child = Child(_spec(tmp_path, code), Console(io.StringIO(), errors))
    async with asyncio.TaskGroup() as tg:
        tg.create_task(child.run())
        await wait_until(
            lambda: child.spec.log_path.exists() and _pid_in(child.spec.log_path) is not None
        )
        helper_pid = _pid_in(child.spec.log_path)
        assert helper_pid is not None
        leader_pid = child.pid
        assert leader_pid is not None
        assert psutil.pid_exists(helper_pid)
        await child.stop(grace=0.5)
    assert "did not stop within 0s" in errors.getvalue() or "did not stop" in errors.getvalue()
    for pid in (leader_pid, helper_pid):
        assert not _running(pid), f"pid {pid} survived the stop"


def _pid_in(log: Path) -> int | None:
    for line in log.read_text().splitlines():
        if line.strip().isdigit():
            return int(line.strip())
    return None


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
