"""`arks up` end to end in a temporary directory: real brokers, real services, no orphans.

Every service that exists in this checkout is started (see
`service_catalog.availability`); each must answer /readyz with 200. SIGTERM (or
`arks down`) must leave no process of the stack behind, checked with psutil.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import nats
import psutil
import pytest
import redis.asyncio as aioredis
import redis.exceptions

from arks_cli import credentials
from arks_cli.__main__ import main
from arks_cli.service_catalog import SERVICES, availability
from arks_cli.stack_state import StackState, read_state
from arks_common import access, ledger, subjects
from arks_common.errors import PermanentError
from arks_common.messaging import Bus
from arks_common.settings import NatsSettings
from cli.tests.conftest import (
    ARKS,
    FREE_PORTS,
    START_TIMEOUT,
    process_tree,
    ready_state,
    stack_env,
    survivors,
    wait_until,
)

# Whole stacks of real processes: typically 5-20 s each, but the machine is shared.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


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
        env=stack_env(),
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc, root
    finally:
        if proc.returncode is None:
            for child in process_tree(proc.pid)[1:]:
                child.kill()
            proc.kill()
            await proc.wait()
        log.close()


async def test_up_serves_every_available_service_and_sigterm_leaves_nothing(
    stack: tuple[asyncio.subprocess.Process, Path], tmp_path: Path
) -> None:
    proc, root = stack
    state = await ready_state(root, proc)

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
    secrets = credentials.read(root)
    assert secrets is not None
    # The brokers take nobody without credentials, and the admin from .arks/.
    with pytest.raises(PermanentError, match="requires a user"):
        await Bus.connect(NatsSettings(url=state.nats_url), name="test")
    nc = await nats.connect(state.nats_url, user=access.ADMIN, password=secrets.nats[access.ADMIN])
    try:
        kv = await nc.jetstream().key_value(subjects.RESOURCES_BUCKET)
        assert kv is not None
    finally:
        await nc.close()
    anonymous = aioredis.Redis.from_url(state.redis_url)
    try:
        with pytest.raises(redis.exceptions.AuthenticationError):
            await anonymous.ping()
    finally:
        await anonymous.aclose()
    valkey = aioredis.Redis.from_url(
        state.redis_url, username=access.ADMIN, password=secrets.valkey[access.ADMIN]
    )
    try:
        assert await valkey.ping()
    finally:
        await valkey.aclose()
    _assert_credentials_are_private(root, secrets)
    _assert_each_service_has_only_its_own_credentials(state, secrets)
    assert (root / "logs" / "nats.log").is_file()
    assert (root / "logs" / "valkey.log").is_file()

    everything = process_tree(proc.pid)
    assert len(everything) >= 3
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    assert survivors(everything) == []
    assert read_state(root) is None
    output = (tmp_path / "arks-up.out").read_text()
    assert "stopped" in output
    assert "Traceback" not in output


def _assert_credentials_are_private(root: Path, secrets: access.Credentials) -> None:
    files = [root / "credentials.json", root / "nats.conf", root / "valkey.acl"]
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    passwords = [*secrets.nats.values(), *secrets.valkey.values()]
    for file in files[1:]:  # the brokers' files hold hashes only
        text = file.read_text()
        assert not [p for p in passwords if p in text], file


def _assert_each_service_has_only_its_own_credentials(
    state: StackState, secrets: access.Credentials
) -> None:
    checked = 0
    for record in state.processes:
        user = access.SERVICE_USERS.get(record.name)
        if user is None:
            continue
        env = psutil.Process(record.pid).environ()
        assert env["ARKS_NATS__USER"] == user
        assert env["ARKS_NATS__PASSWORD"] == secrets.nats[user]
        assert env["ARKS_NATS__INBOX_PREFIX"] == access.inbox_prefix(user)
        if user in secrets.valkey:
            assert env["ARKS_REDIS__USERNAME"] == user
            assert env["ARKS_REDIS__PASSWORD"] == secrets.valkey[user]
        else:
            assert "ARKS_REDIS__PASSWORD" not in env
        own = {secrets.nats[user], secrets.valkey.get(user)}
        others = {*secrets.nats.values(), *secrets.valkey.values()} - own
        assert not [name for name, value in env.items() if value in others], record.name
        checked += 1
    assert checked == len([r for r in state.processes if r.name in access.SERVICE_USERS])
    assert checked >= 1


async def test_up_detached_refuses_a_second_stack_and_down_cleans_up_after_a_crash(
    tmp_path: Path,
) -> None:
    root = tmp_path / ".arks"
    # Brokers and one service are enough to exercise detaching and crash clean-up.
    without = ["--without", "arks-reconciler", "--without", "arks-router"]
    without += ["--without", "arks-model-cache"]
    up = await asyncio.create_subprocess_exec(
        *ARKS,
        "up",
        "-d",
        "--no-quickstart",
        "--dir",
        str(root),
        *FREE_PORTS,
        *without,
        cwd=tmp_path,
        env=stack_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(up.communicate(), START_TIMEOUT)
    assert up.returncode == 0, out.decode()
    assert b"arks down" in out
    state = read_state(root)
    assert state is not None
    assert state.ready
    assert {p.name for p in state.processes} == {"nats-server", "valkey-server", "arks-accountant"}
    everything = process_tree(state.supervisor_pid)
    try:
        again = await asyncio.create_subprocess_exec(
            *ARKS,
            "up",
            "--no-quickstart",
            "--dir",
            str(root),
            *FREE_PORTS,
            cwd=tmp_path,
            env=stack_env(),
            stderr=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
        )
        _, err = await asyncio.wait_for(again.communicate(), 60)
        assert again.returncode == 1
        assert b"a stack already runs from" in err
        assert b"Traceback" not in err

        # A supervisor killed outright cannot stop its children: `arks down` must.
        everything[0].kill()
        await wait_until(lambda: survivors(everything[:1]) == [])
        assert survivors(everything[1:]) != []
        down = await asyncio.create_subprocess_exec(
            *ARKS,
            "down",
            cwd=tmp_path,
            env=stack_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(down.communicate(), 90)
        assert down.returncode == 0, out.decode()
        assert b"killed" in out
        assert survivors(everything) == []
        assert read_state(root) is None
    finally:
        # A failed assertion above must not leave a detached stack running.
        for proc in everything:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()


async def test_commands_say_when_the_stack_is_not_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ARKS_DIR", raising=False)
    monkeypatch.setenv("ARKS_NATS__URL", "nats://127.0.0.1:1")
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["get", "arkapp"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == (
        "error: cannot reach NATS at nats://127.0.0.1:1: is `make run` (or `arks up`) running?"
    )
    assert await asyncio.to_thread(main, ["down"]) == 1
    assert "error: no stack to stop" in capsys.readouterr().err


async def test_up_with_the_quickstart_answers_the_readme_curl_and_stops_its_replicas(
    tmp_path: Path,
) -> None:
    from openai import AsyncOpenAI

    root = tmp_path / ".arks"
    out_path = tmp_path / "arks-up.out"
    everything: list[psutil.Process] = []
    with out_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *ARKS,
            "up",
            "--dir",
            str(root),
            *FREE_PORTS,
            cwd=tmp_path,
            env=stack_env(),
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        state = await ready_state(root, proc)
        output = out_path.read_text()
        assert state.router_url is not None
        assert state.hint is not None
        assert f"curl {state.router_url}/v1/chat/completions" in output
        assert '-H "Authorization: Bearer sk-test123456"' in output
        assert '"model": "qwen-7b"' in output
        assert (root / "models" / "default" / "qwen-7b" / "config.json").is_file()

        client = AsyncOpenAI(base_url=f"{state.router_url}/v1", api_key="sk-test123456")
        try:
            reply = await client.chat.completions.create(
                model="qwen-7b",
                messages=[{"role": "user", "content": "Hello, who are you?"}],
                max_tokens=16,
            )
        finally:
            await client.close()
        assert reply.choices[0].message.content
        assert reply.usage is not None
        assert reply.usage.completion_tokens > 0

        everything = process_tree(proc.pid)
        names = {p.name() for p in everything}
        assert any(name.startswith("arks-engine-sim") for name in names), names
        await _assert_usage_is_applied_and_billed(state, root)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 90) == 0
    assert survivors(everything) == []


async def _assert_usage_is_applied_and_billed(state: StackState, root: Path) -> None:
    """The accountant, as its own user, applied the request and billed it; the billing
    user reads the record."""
    secrets = credentials.read(root)
    assert secrets is not None
    admin = aioredis.Redis.from_url(
        state.redis_url, username=access.ADMIN, password=secrets.valkey[access.ADMIN]
    )
    key = ledger.usage_key("default", "token", "example-token")
    try:
        async with asyncio.timeout(30):
            # The quickstart's own probes and the test's request: at least one.
            while int(await admin.hget(key, "requests") or 0) < 1:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    finally:
        await admin.aclose()
    billing = await Bus.connect(
        secrets.nats_settings(access.BILLING, state.nats_url, connect_deadline=10),
        name="test-billing",
    )
    try:
        sub = await billing.js.pull_subscribe(
            subjects.BILLING_ALL, durable="test-billing", stream=subjects.BILLING_STREAM
        )
        records = await sub.fetch(1, timeout=10)
        assert b"example-token" in records[0].data
        await records[0].ack()
    finally:
        await billing.close()


async def test_up_stops_when_the_wrapper_that_started_it_is_killed(tmp_path: Path) -> None:
    # What `make run` looks like to a process manager that sends SIGTERM to make alone:
    # the wrapper dies, nobody signals `arks up`, so it must notice by itself.
    root = tmp_path / ".arks"
    services = [f"--without={name}" for name in SERVICES]
    command = " ".join([*ARKS, "up", "--no-quickstart", "--dir", str(root), *FREE_PORTS, *services])
    wrapper = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        f"{command}; echo finished",
        cwd=tmp_path,
        env=stack_env(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
        # as from a terminal or make, even when this test runs under `nohup` (an ignored
        # SIGHUP is inherited and tells `arks up` to outlive its starter)
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
    )
    everything: list[psutil.Process] = []
    try:
        state = await ready_state(root, wrapper)
        everything = process_tree(state.supervisor_pid)
        assert {p.name() for p in everything} >= {"nats-server", "valkey-server"}
        wrapper.kill()
        await wrapper.wait()
        await wait_until(lambda: survivors(everything) == [])
    finally:
        if wrapper.returncode is None:
            wrapper.kill()
            await wrapper.wait()
        for proc in everything:
            with contextlib.suppress(psutil.Error):
                proc.kill()
    assert read_state(root) is None


async def test_a_service_that_keeps_crashing_stops_the_stack_with_its_log(
    tmp_path: Path,
) -> None:
    root = tmp_path / ".arks"
    others = [f"--without={name}" for name in SERVICES if name != "arks-router"]
    env = {**stack_env(), "ARKS_ROUTING__DEFAULT_STRATEGY": "no-such-strategy"}
    proc = await asyncio.create_subprocess_exec(
        *ARKS,
        "up",
        "--no-quickstart",
        "--dir",
        str(root),
        *FREE_PORTS,
        *others,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), START_TIMEOUT)
    text = out.decode()
    assert proc.returncode == 1, text
    assert "warning: arks-router exited with code" in text
    assert "restarting in 1s" in text
    assert "error: arks-router exited with code" in text
    assert f"3 times while starting; the end of {root / 'logs' / 'arks-router.log'}" in text
    assert "default_strategy" in text
    assert read_state(root) is None
