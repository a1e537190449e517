"""B4: limit and quota accuracy with 1, 2 and 4 router processes sharing Valkey.

Recipe B4 (anchors.md §11): for each router count, 100 concurrent clients on one token
send requests round-robin to the routers, as fast as they can, well past the limit:

- rpm 600: admitted requests must be exactly 600 (over-admission 0; LiteLLM's and
  upstream's check-then-increment admit more, more so with more replicas);
- tpm 60,000: the tokens the engine reports for the admitted requests may exceed the
  limit by no more than what settlement added after admission (reservations are the
  estimate; the figure reported is the overshoot next to the largest reservation);
- a total-token quota of 40,000 with the accountant running (it applies usage and
  releases reservations): the quota's final `used` may exceed the budget by no more
  than what was reserved in flight (concurrency x one request's reservation), and every
  reservation is released once the accountant has caught up.

Each phase finishes well inside one minute, so the sliding windows never let earlier
requests slide out while it runs (the elapsed time is reported and checked).

Cores: routers unpinned; simulator (time scale 50), accountant, NATS, Valkey and the
clients share the machine. Accuracy does not depend on speed.

python -m bench router_limits           # 1, 2, 4 routers; 100 clients
python -m bench router_limits --quick   # 1, 2 routers; 50 clients, smaller limits
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from typing import Any

import aiohttp
import orjson

from arks_common import ledger, subjects
from arks_common.events import UsageRecorded
from bench.common import BenchContext, process, venv_bin
from bench.router_rig import Rig, chat_body, rig

PROMPT_CHARS = 800  # ~200 tokens
MAX_TOKENS = 64


async def _storm(
    routers: list[str], token: str, requests: int, clients: int, body: bytes
) -> tuple[list[tuple[int, str]], float]:
    """(status, request id) of every request, and the elapsed seconds."""
    turns = itertools.count()
    results: list[tuple[int, str]] = []
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=clients + 10)

    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            while (turn := next(turns)) < requests:
                url = routers[turn % len(routers)] + "/v1/chat/completions"
                async with session.post(url, data=body, headers=headers) as answer:
                    await answer.read()
                    results.append((answer.status, answer.headers.get("x-request-id", "")))

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
    return results, time.perf_counter() - started


async def _events(r: Rig, ids: set[str], within: float = 60.0) -> list[UsageRecorded]:
    """The usage events of these request ids (waiting until all have arrived)."""
    deadline = time.monotonic() + within
    while True:
        info = await r.bus.js.stream_info(subjects.USAGE_STREAM)
        found: list[UsageRecorded] = []
        if info.state.messages:
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await r.bus.js.get_msg(subjects.USAGE_STREAM, seq)
                event = UsageRecorded.from_bytes(msg.data or b"")
                if event.id in ids:
                    found.append(event)
        if len(found) >= len(ids) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.5)


async def _redis_int(r: Rig, key: str) -> int:
    reader, writer = await asyncio.open_connection(r.valkey.host, r.valkey.port)
    try:
        writer.write(f"*2\r\n$3\r\nGET\r\n${len(key)}\r\n{key}\r\n".encode())
        line = await reader.readline()
        if line.startswith(b"$-1"):
            return 0
        return int((await reader.readline()).strip())
    finally:
        writer.close()


async def _phase_count(
    r: Rig, routers: list[str], n: int, clients: int, quick: bool
) -> dict[str, Any]:
    body = chat_body(PROMPT_CHARS, MAX_TOKENS, stream=False)
    rpm = 200 if quick else 600
    tpm = 20_000 if quick else 60_000
    quota = 15_000 if quick else 40_000

    rpm_token = f"sk-b4-rpm-{n}"
    await r.token(rpm_token, ["m"], rpm=rpm)
    tpm_token = f"sk-b4-tpm-{n}"
    await r.token(tpm_token, ["m"], tpm=tpm)
    quota_name = f"b4-{n}"
    await r.quota(quota_name, total=quota)
    quota_token = f"sk-b4-quota-{n}"
    await r.token(quota_token, ["m"], quota=quota_name)
    await asyncio.sleep(0.5)  # grants reach every router through KV

    results: dict[str, Any] = {}

    answers, elapsed = await _storm(routers, rpm_token, rpm * 2, clients, body)
    statuses = collections.Counter(status for status, _ in answers)
    results["rpm"] = {
        "limit": rpm,
        "sent": len(answers),
        "admitted": statuses[200],
        "over_admission": statuses[200] - rpm,
        "refused_429": statuses[429],
        "other": len(answers) - statuses[200] - statuses[429],
        "seconds": round(elapsed, 2),
    }

    per_request = (PROMPT_CHARS // 4 + 10) + MAX_TOKENS
    answers, elapsed = await _storm(
        routers, tpm_token, 2 * tpm // per_request + clients, clients, body
    )
    admitted = {rid for status, rid in answers if status == 200}
    events = await _events(r, admitted)
    used = sum(e.total_tokens for e in events)
    reserved_max = max((e.reserved_tokens for e in events), default=0)
    results["tpm"] = {
        "limit": tpm,
        "admitted_requests": len(admitted),
        "engine_tokens_admitted": used,
        "overshoot_tokens": max(0, used - tpm),
        "largest_reservation": reserved_max,
        "seconds": round(elapsed, 2),
    }

    answers, elapsed = await _storm(
        routers, quota_token, 2 * quota // per_request + clients, clients, body
    )
    admitted = {rid for status, rid in answers if status == 200}
    events = await _events(r, admitted)
    reservation = max((e.reserved_tokens for e in events), default=0)
    used_key = ledger.used_key("default", quota_name, ledger.LIFETIME, "total")
    reserved_key = ledger.reserved_key("default", quota_name, ledger.LIFETIME, "total")
    deadline = time.monotonic() + 60
    engine_used = sum(e.total_tokens for e in events)
    while time.monotonic() < deadline:
        applied = await _redis_int(r, used_key)
        if applied >= engine_used and await _redis_int(r, reserved_key) == 0:
            break
        await asyncio.sleep(0.5)
    applied = await _redis_int(r, used_key)
    results["quota"] = {
        "limit": quota,
        "admitted_requests": len(admitted),
        "refused_quota": sum(1 for status, _ in answers if status == 429),
        "used_applied_by_accountant": applied,
        "engine_tokens_admitted": engine_used,
        "overshoot_tokens": max(0, applied - quota),
        "reserved_in_flight_bound": clients * reservation,
        "reserved_left_after_settlement": await _redis_int(r, reserved_key),
        "seconds": round(elapsed, 2),
    }
    return results


async def run(ctx: BenchContext) -> dict[str, Any]:
    counts = [1, 2] if ctx.quick else [1, 2, 4]
    clients = 50 if ctx.quick else 100
    phases: dict[str, Any] = {}
    async with rig(ctx) as r:
        sim = await r.sim("m", time_scale="50", max_num_seqs="1024")
        await r.route("m", [sim])
        accountant_env = {
            "ARKS_NATS__URL": r.nats.url,
            "ARKS_REDIS__URL": r.valkey.url,
            "ARKS_STATUS__WRITER": "none",
            "ARKS_TELEMETRY__LOG_LEVEL": "WARNING",
        }
        await r.stack.enter_async_context(
            process(
                [venv_bin("arks-accountant")],
                log=ctx.workdir / "accountant.log",
                env=accountant_env,
            )
        )
        routers: list[str] = []
        for n in counts:
            while len(routers) < n:
                routers.append(await r.router(cpu=None))
            phases[str(n)] = await _phase_count(r, routers[:n], n, clients, ctx.quick)
            ctx.note(f"{n} router(s): {orjson.dumps(phases[str(n)]).decode()}")

    exact = all(p["rpm"]["over_admission"] == 0 for p in phases.values())
    inside_minute = all(p["rpm"]["seconds"] < 55 for p in phases.values())
    quota_ok = all(
        p["quota"]["overshoot_tokens"] <= p["quota"]["reserved_in_flight_bound"]
        and p["quota"]["reserved_left_after_settlement"] == 0
        for p in phases.values()
    )
    worst_tpm = max(p["tpm"]["overshoot_tokens"] for p in phases.values())
    worst_quota = max(p["quota"]["overshoot_tokens"] for p in phases.values())
    return {
        "recipe": "B4",
        "clients": clients,
        "phases_by_router_count": phases,
        "targets": {
            "rpm_over_admission": 0,
            "quota_overshoot": "<= reserved in flight",
        },
        "headline": "rpm over-admission "
        + ", ".join(f"{n} router(s): {p['rpm']['over_admission']}" for n, p in phases.items())
        + f"; worst tpm overshoot {worst_tpm} tokens; worst quota overshoot {worst_quota} tokens",
        "verdict": "PASS" if exact and inside_minute and quota_ok else "MISS",
    }
