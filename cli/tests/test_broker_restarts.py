"""A broker killed under `arks up` comes back by itself, and usage stays exact.

`kill -9` of Valkey or NATS while clients send chat completions through the router (the
official `openai` client, a real router, accountant, reconciler and engine simulator):
`arks up` restarts the broker on the same port with the same data, says so on its
console, and records the new pid in `.arks/state.json`; requests succeed again without
anybody stepping in; and the quota's used tokens equal what the clients were told they
used in their 200 responses (a request refused with 503 while the broker was away is
not charged, one answered is charged once).

The time from the kill to the first successful request is printed (run with `-s` to see
it), not asserted: the machine is shared.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import openai
import pytest
from openai import AsyncOpenAI

from arks_cli import processes
from arks_cli.stack_state import ProcessRecord, StackState, read_state
from cli.tests.conftest import (
    ARKS,
    FREE_PORTS,
    process_tree,
    ready_state,
    stack_env,
    survivors,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CLIENTS = 3
MAX_REQUESTS = 3000
"""Bounded traffic: no client sends more than this many requests in all."""
FAILURE_PAUSE = 0.05
WARM_UP = 10
AFTER_RECOVERY = 10
RECOVERY_CAP = 30.0
LEDGER_CAP = 60.0
QUOTA = "chaos-quota"
QUOTA_YAML = f"""\
apiVersion: arks.ai/v1
kind: ArksQuota
metadata:
  name: {QUOTA}
  namespace: default
spec:
  quotas:
    - type: prompt
      value: 1000000000
    - type: response
      value: 1000000000
    - type: total
      value: 1000000000
"""


@dataclass
class Traffic:
    """What the clients saw: answered requests with their usage, and failures."""

    sent: int = 0
    ok: list[tuple[float, float, int, int, int]] = field(default_factory=list)
    """(sent at, answered at, prompt, completion, total) of each 200."""
    failed: Counter[str] = field(default_factory=Counter)

    def succeeded_after(self, moment: float) -> list[float]:
        return [answered for sent, answered, *_ in self.ok if sent > moment]


async def _client(client: AsyncOpenAI, traffic: Traffic, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set() and traffic.sent < MAX_REQUESTS:
        traffic.sent += 1
        sent = loop.time()
        try:
            reply = await client.chat.completions.create(
                model="qwen-7b",
                messages=[{"role": "user", "content": f"Count to {traffic.sent}."}],
                max_tokens=8,
            )
        except openai.APIStatusError as exc:
            traffic.failed[str(exc.status_code)] += 1
            await asyncio.sleep(FAILURE_PAUSE)
            continue
        except openai.APIConnectionError as exc:
            traffic.failed[type(exc).__name__] += 1
            await asyncio.sleep(FAILURE_PAUSE)
            continue
        usage = reply.usage
        assert usage is not None
        traffic.ok.append(
            (sent, loop.time(), usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)
        )


async def _until(what: str, predicate: Callable[[], bool], cap: float) -> None:
    try:
        async with asyncio.timeout(cap):
            while not predicate():  # noqa: ASYNC110 - polls state other tasks change
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"{what}: not within {cap:.0f}s")


async def _arks(cwd: Path, *argv: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *ARKS,
        *argv,
        cwd=cwd,
        env=stack_env(),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _chaos_token(cwd: Path) -> str:
    """A quota of our own (the quickstart's probe used the quickstart's) and a token
    without tight rate limits on it."""
    code, out, err = await _arks(cwd, "apply", "-f", "-", stdin=QUOTA_YAML.encode())
    assert code == 0, out + err
    code, out, err = await _arks(
        cwd, "token", "create", "chaos", "--endpoint", "qwen-7b", "--rpm", "100000",
        "--quota", QUOTA,
    )  # fmt: skip
    assert code == 0, out + err
    return out.strip()


def _broker(state: StackState | None, name: str) -> ProcessRecord | None:
    if state is None:
        return None
    return next((p for p in state.processes if p.name == name), None)


async def _quota_used(cwd: Path) -> dict[str, int]:
    code, out, err = await _arks(cwd, "get", "aq", QUOTA, "-o", "json")
    assert code == 0, out + err
    status = json.loads(out).get("status") or {}
    return {u["type"]: int(u["used"]) for u in status.get("quotaStatus", [])}


@pytest.mark.parametrize("broker", ["valkey-server", "nats-server"])
async def test_a_broker_killed_during_traffic_is_restarted_and_usage_stays_exact(
    tmp_path: Path, broker: str
) -> None:
    root = tmp_path / ".arks"
    out_path = tmp_path / "arks-up.out"
    with out_path.open("wb") as log:
        up = await asyncio.create_subprocess_exec(
            *ARKS, "up", "--dir", str(root), *FREE_PORTS,
            cwd=tmp_path, env=stack_env(), stdout=log, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    everything = []
    try:
        state = await ready_state(root, up)
        assert state.router_url is not None
        everything = process_tree(up.pid)
        token = await _chaos_token(tmp_path)
        loop = asyncio.get_running_loop()
        traffic = Traffic()
        stop = asyncio.Event()
        client = AsyncOpenAI(
            base_url=f"{state.router_url}/v1", api_key=token, max_retries=0, timeout=60.0
        )
        async with client, asyncio.TaskGroup() as tg:
            for _ in range(CLIENTS):
                tg.create_task(_client(client, traffic, stop))
            try:
                await _until("traffic flows", lambda: len(traffic.ok) >= WARM_UP, 60.0)

                old = _broker(read_state(root), broker)
                assert old is not None
                assert processes.alive(old)
                killed_at = loop.time()
                os.kill(old.pid, signal.SIGKILL)

                def restarted() -> bool:
                    new = _broker(read_state(root), broker)
                    return new is not None and new.pid != old.pid and processes.alive(new)

                await _until(f"{broker} restarted", restarted, RECOVERY_CAP)
                back_at = loop.time()
                await _until(
                    "requests succeed again",
                    lambda: bool(traffic.succeeded_after(killed_at)),
                    RECOVERY_CAP,
                )
                first_success = min(traffic.succeeded_after(killed_at))
                await _until(
                    "requests keep succeeding",
                    lambda: len(traffic.succeeded_after(back_at)) >= AFTER_RECOVERY,
                    RECOVERY_CAP,
                )
            finally:
                stop.set()
        print(
            f"\n{broker}: back in state.json {back_at - killed_at:.2f}s after kill -9; "
            f"first successful request {first_success - killed_at:.2f}s after; "
            f"{len(traffic.ok)} answered, failures {dict(traffic.failed)}"
        )

        after = read_state(root)
        assert after is not None
        assert (after.nats_url, after.redis_url) == (state.nats_url, state.redis_url)
        output = out_path.read_text()
        assert f"{broker} was killed by SIGKILL" in output
        assert f"{broker} restarted" in output
        assert str(root / "logs" / f"{broker.removesuffix('-server')}.log") in output

        # Charged exactly what the clients were told, 503s not at all.
        expected = {
            "prompt": sum(r[2] for r in traffic.ok),
            "response": sum(r[3] for r in traffic.ok),
            "total": sum(r[4] for r in traffic.ok),
        }
        deadline = loop.time() + LEDGER_CAP
        used = await _quota_used(tmp_path)
        while used != expected and loop.time() < deadline:
            await asyncio.sleep(1.0)
            used = await _quota_used(tmp_path)
        assert used == expected
    finally:
        if up.returncode is None:
            up.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(up.wait(), 90) == 0
    assert survivors(everything) == []
    assert "Traceback" not in out_path.read_text()
