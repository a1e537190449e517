"""A command run while `arks up` restarts a broker says so, in one line, and exits 1.

The stack here is a `.arks/state.json` naming a live supervisor (this test process) and
a broker URL nothing answers on: what `arks get`, `describe` and `usage` meet between a
broker's death and its restart. (The restart itself: test_broker_restarts.py.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import psutil
import pytest

from arks_cli.__main__ import main
from arks_cli.stack_state import StackState, write_state
from arks_common.embedded import free_port


def _stack(tmp_path: Path, *, nats_url: str, redis_url: str, supervisor: int | None = None) -> None:
    """A state file; its supervisor is this process unless another pid is given."""
    me = psutil.Process()
    write_state(
        tmp_path / ".arks",
        StackState(
            dir=str(tmp_path / ".arks"),
            supervisor_pid=supervisor or me.pid,
            # Another pid is a supervisor that is gone: its start time cannot match.
            supervisor_create_time=me.create_time() if supervisor is None else 1.0,
            started_at="2026-01-01T00:00:00Z",
            nats_url=nats_url,
            redis_url=redis_url,
            ready=True,
        ),
    )


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("ARKS_DIR", "ARKS_NATS__URL", "ARKS_REDIS__URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


async def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_get_and_describe_say_that_arks_up_restarts_nats(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nats_url = f"nats://127.0.0.1:{free_port()}"
    _stack(here, nats_url=nats_url, redis_url="redis://127.0.0.1:6379/0")
    expected = (
        f"error: NATS at {nats_url} is not answering "
        "(arks up restarts it; see .arks/logs/nats.log)\n"
    )
    for argv in (("get", "aq"), ("describe", "aq", "basic-quota")):
        assert await _run(capsys, *argv) == (1, "", expected)


async def test_usage_says_that_arks_up_restarts_valkey(
    here: Path, capsys: pytest.CaptureFixture[str], nats_server: object
) -> None:
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    nats_url = nats_server.url  # type: ignore[attr-defined]
    _stack(here, nats_url=nats_url, redis_url=redis_url)
    expected = (
        f"error: Valkey at {redis_url} is not answering "
        "(arks up restarts it; see .arks/logs/valkey.log)\n"
    )
    assert await _run(capsys, "usage") == (1, "", expected)


async def test_without_a_live_arks_up_the_command_asks_whether_the_stack_runs(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = await asyncio.create_subprocess_exec("true")
    await gone.wait()
    nats_url = f"nats://127.0.0.1:{free_port()}"
    _stack(here, nats_url=nats_url, redis_url="redis://127.0.0.1:6379/0", supervisor=gone.pid)
    code, out, err = await _run(capsys, "get", "aq")
    assert (code, out) == (1, "")
    assert err == f"error: cannot reach NATS at {nats_url}: is `make run` (or `arks up`) running?\n"
