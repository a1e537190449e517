"""examples/billing_subscriber.py against real records: stored once, exact totals."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from decimal import Decimal
from pathlib import Path

from arks_accountant.testing import (
    make_settings,
    publish_usage,
    put_spec,
    running_accountant,
    wait_for,
)
from arks_common import events
from arks_common.testing.builders import make_quota_spec, make_usage_event

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "billing_subscriber.py"


async def run_example(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_example_subscriber_stores_each_record_once(
    bus, redis, nats_server, valkey_server, tmp_path
):
    spec = make_quota_spec(
        prices=[
            events.EndpointPrice(
                endpoint="qwen-7b", prompt=Decimal("0.5"), completion=Decimal("1.5")
            )
        ]
    )
    await put_spec(bus, spec)
    usage = [make_usage_event(prompt_tokens=100 + i, completion_tokens=10) for i in range(12)]
    usage.append(make_usage_event(quota=None, quota_period=None, token_name="solo"))
    settings = make_settings(nats_server.url, valkey_server.url)
    async with running_accountant(settings) as acct:
        await publish_usage(bus, *usage)
        await wait_for(
            lambda: acct.metric("arks_accountant_events_total", result="applied") == len(usage),
            what="all applied",
        )
    db = tmp_path / "billing.sqlite"
    code, out, err = await run_example("--nats", nats_server.url, "--db", str(db), "--once")
    assert code == 0, err
    assert "received 13 records, 13 new" in err
    code, out, err = await run_example(
        "--nats", nats_server.url, "--db", str(db), "--once", "--durable", "replay"
    )
    assert code == 0, err
    assert "received 13 records, 0 new" in err
    with sqlite3.connect(db) as conn:
        amounts = [Decimal(a) for (a,) in conn.execute("SELECT amount_total FROM billing")]
    want = sum(
        (Decimal(e.prompt_tokens) * Decimal("0.5") + Decimal(e.completion_tokens) * Decimal("1.5"))
        / 10**6
        for e in usage[:12]
    )
    assert sum(amounts) == want
    assert "quota basic-quota" in out
    assert "token solo" in out
