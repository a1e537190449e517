"""`arks up` end to end in a temporary directory: real brokers, real services, no orphans.

Every service that exists in this checkout is started (see
`service_catalog.availability`); each must answer /readyz with 200. SIGTERM (or
`arks down`) must leave no process of the stack behind, checked with psutil.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import nats
import psutil  # type: ignore[import-untyped]
import pytest
import redis.asyncio as aioredis

from arks_cli.service_catalog import SERVICES, availability
from arks_cli.stack_state import StackState, read_state
from arks_common import subjects

ARKS = [sys.executable, "-m", "arks_cli"]
FREE_PORTS = ["--nats-port", "0", "--valkey-port", "0", "--router-port", "0"]
START_TIMEOUT = 90.0


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARKS_")}
    env["ARKS_LOCAL__SIM_TIME_SCALE"] = "50"
    return env


async def _ready_state(root: Path, proc: asyncio.subprocess.Process) -> StackState:
    async with asyncio.timeout(START_TIMEOUT):
        while True:
            state = read_state(root)
            if state is not None and state.ready:
                return state
            if proc.returncode is not None:
                pytest.fail(f"arks up exited with {proc.returncode} before it was ready")
            await asyncio.sleep(0.1)


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _survivors(procs: list[psutil.Process]) -> list[str]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{proc.pid} {proc.name()}")
        except psutil.NoSuchProcess:
            continue
    return alive


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, Path]]:
    root = tmp_path / ".arks"
    log = (tmp_path / "arks-up.out").open("wb")
    proc = await asyncio.create_subprocess_exec(
        *ARKS,
        "up",
        "--no-quickstart",
        "--dir",
        str(root),
        *FREE_PORTS,
        cwd=tmp_path,
        env=_env(),
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc, root
    finally:
        if proc.returncode is None:
            for child in _tree(proc.pid)[1:]:
                child.kill()
            proc.kill()
            await proc.wait()
        log.close()


async def test_up_serves_every_available_service_and_sigterm_leaves_nothing(
    stack: tuple[asyncio.subprocess.Process, Path], tmp_path: Path
) -> None:
    proc, root = stack
    state = await _ready_state(root, proc)

    names = {p.name for p in state.processes}
    assert {"nats-server", "valkey-server"} <= names
    for service in SERVICES:
        if availability(service) is None:
            assert service in names, f"{service} is available but was not started"
    async with httpx.AsyncClient(timeout=5.0) as client:
        for record in state.processes:
            if record.ready_url:
                response = await client.get(record.ready_url)
                assert response.status_code == 200, (record.name, response.text)
    nc = await nats.connect(state.nats_url)
    try:
        kv = await nc.jetstream().key_value(subjects.RESOURCES_BUCKET)
        assert kv is not None
    finally:
        await nc.close()
    valkey = aioredis.Redis.from_url(state.redis_url)
    try:
        assert await valkey.ping()
    finally:
        await valkey.aclose()
    assert (root / "logs" / "nats.log").is_file()
    assert (root / "logs" / "valkey.log").is_file()

    everything = _tree(proc.pid)
    assert len(everything) >= 3
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    assert _survivors(everything) == []
    assert read_state(root) is None
    output = (tmp_path / "arks-up.out").read_text()
    assert "stopped" in output
    assert "Traceback" not in output


async def test_up_detached_then_down(tmp_path: Path) -> None:
    root = tmp_path / ".arks"
    up = await asyncio.create_subprocess_exec(
        *ARKS,
        "up",
        "-d",
        "--no-quickstart",
        "--dir",
        str(root),
        *FREE_PORTS,
        cwd=tmp_path,
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(up.communicate(), START_TIMEOUT)
    assert up.returncode == 0, out.decode()
    assert b"arks down" in out
    state = read_state(root)
    assert state is not None
    assert state.ready
    everything = _tree(state.supervisor_pid)

    again = await asyncio.create_subprocess_exec(
        *ARKS,
        "up",
        "--no-quickstart",
        "--dir",
        str(root),
        *FREE_PORTS,
        cwd=tmp_path,
        env=_env(),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    _, err = await asyncio.wait_for(again.communicate(), 60)
    assert again.returncode == 1
    assert b"a stack already runs from" in err
    assert b"Traceback" not in err

    down = await asyncio.create_subprocess_exec(
        *ARKS,
        "down",
        cwd=tmp_path,
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(down.communicate(), 90)
    assert down.returncode == 0, out.decode()
    assert _survivors(everything) == []
    assert read_state(root) is None


async def test_down_cleans_up_after_a_killed_supervisor(
    stack: tuple[asyncio.subprocess.Process, Path], tmp_path: Path
) -> None:
    proc, root = stack
    await _ready_state(root, proc)
    everything = _tree(proc.pid)
    proc.kill()  # no chance to stop its children: they outlive it for now
    await proc.wait()
    assert _survivors(everything[1:]) != []
    down = await asyncio.create_subprocess_exec(
        *ARKS,
        "down",
        "--dir",
        str(root),
        cwd=tmp_path,
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(down.communicate(), 60)
    assert down.returncode == 0, out.decode()
    assert b"killed" in out
    assert _survivors(everything) == []


async def test_commands_say_when_the_stack_is_not_running(tmp_path: Path) -> None:
    env = {**_env(), "ARKS_NATS__URL": "nats://127.0.0.1:1"}
    proc = await asyncio.create_subprocess_exec(
        *ARKS,
        "get",
        "arkapp",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert out == b""
    assert err.decode().strip() == (
        "error: cannot reach NATS at nats://127.0.0.1:1: is `make run` (or `arks up`) running?"
    )
    down = await asyncio.create_subprocess_exec(
        *ARKS,
        "down",
        cwd=tmp_path,
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(down.communicate(), 30)
    assert down.returncode == 1
    assert json.dumps("no stack to stop")[1:-1] in err.decode()
