"""A billing subscriber you can copy: every priced usage record, stored once, with totals.

    ARKS_NATS__USER=billing ARKS_NATS__PASSWORD=$(.venv/bin/arks credentials nats billing) \
    .venv/bin/python examples/billing_subscriber.py --nats nats://127.0.0.1:4222 --db b.sqlite
    .venv/bin/python examples/billing_subscriber.py --db b.sqlite --once     # drain, then exit
    .venv/bin/python examples/billing_subscriber.py --db b.sqlite --report   # totals only

It logs in as the read-only `billing` user (`ARKS_NATS__USER` / `ARKS_NATS__PASSWORD`;
that user may read ARKS_BILLING and nothing else, and receives replies below its own
inbox prefix `_INBOX_billing`: docs/security.md). It binds a durable pull consumer on
the JetStream stream ARKS_BILLING (so records that arrive while it is down wait for
it), stores each BillingRecord in SQLite keyed by its `id` — a record delivered twice
is stored once — and acks only after the batch is committed. Amounts stay exact: they
are decimal strings in the record and TEXT here, summed with `decimal.Decimal`;
`charged_nanos` is the integer the quota was charged.

Outside this repository, replace the `arks_common` imports with the values in
docs/billing.md: stream `ARKS_BILLING`, subjects `arks.billing.>`, and parse the JSON
body yourself (every field is listed there).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import nats
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from arks_common import access, events, subjects
from arks_common.errors import PermanentError

SCHEMA = """
CREATE TABLE IF NOT EXISTS billing (
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    namespace TEXT NOT NULL,
    token_name TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    quota TEXT,
    period TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    currency TEXT NOT NULL,
    price_version TEXT NOT NULL,
    amount_total TEXT NOT NULL,
    charged_nanos INTEGER NOT NULL,
    outcome TEXT NOT NULL
)
"""


def store(db: sqlite3.Connection, records: Sequence[events.BillingRecord]) -> int:
    """Insert the records, ignoring ids already stored; returns how many were new."""
    before = db.total_changes
    db.executemany(
        "INSERT OR IGNORE INTO billing VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [
            (
                r.id,
                r.request_id,
                r.occurred_at.isoformat(),
                r.namespace,
                r.token_name,
                r.endpoint,
                r.quota,
                r.period,
                r.prompt_tokens,
                r.cached_tokens,
                r.completion_tokens,
                r.currency,
                r.price_version,
                format(r.amount_total, "f"),
                r.charged_nanos,
                r.outcome.value,
            )
            for r in records
        ],
    )
    db.commit()
    return db.total_changes - before


def report(db: sqlite3.Connection) -> str:
    """Totals per namespace and quota (or token, for requests without a quota)."""
    rows = db.execute(
        "SELECT namespace, COALESCE('quota ' || quota, 'token ' || token_name), currency, "
        "amount_total, prompt_tokens, completion_tokens FROM billing"
    ).fetchall()
    totals: dict[tuple[str, str, str], list[Decimal | int]] = {}
    for namespace, owner, currency, amount, prompt, completion in rows:
        entry = totals.setdefault((namespace, owner, currency), [Decimal(0), 0, 0, 0])
        entry[0] += Decimal(amount)
        entry[1] += 1
        entry[2] += prompt
        entry[3] += completion
    header = ("NAMESPACE", "CHARGED TO", "REQUESTS", "PROMPT", "COMPLETION")
    lines = [f"{header[0]:<16}{header[1]:<28}{header[2]:>10}{header[3]:>12}{header[4]:>12}  AMOUNT"]
    for (namespace, owner, currency), (amount, requests, prompt, completion) in sorted(
        totals.items()
    ):
        lines.append(
            f"{namespace:<16}{owner:<28}{requests:>10}{prompt:>12}{completion:>12}  "
            f"{format(amount, 'f')} {currency}"
        )
    return "\n".join(lines)


async def consume(args: argparse.Namespace, db: sqlite3.Connection, stop: asyncio.Event) -> None:
    user = os.environ.get("ARKS_NATS__USER")
    nc = await nats.connect(
        args.nats,
        name="billing-subscriber",
        max_reconnect_attempts=-1,
        user=user,
        password=os.environ.get("ARKS_NATS__PASSWORD"),
        # A user may subscribe only below its own inbox prefix.
        inbox_prefix=access.inbox_prefix(user) if user else "_INBOX",
    )
    js = nc.jetstream()
    sub = await js.pull_subscribe(
        args.filter,
        durable=args.durable,
        stream=subjects.BILLING_STREAM,
        config=ConsumerConfig(
            durable_name=args.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=args.filter,
            ack_wait=60,
        ),
    )
    stored = seen = 0
    try:
        while not stop.is_set():
            try:
                batch: list[Msg] = await sub.fetch(args.batch, timeout=1)
            except TimeoutError:  # nats.errors.TimeoutError is one too
                if args.once:
                    break
                continue
            records, good = [], []
            for msg in batch:
                try:
                    records.append(events.decode_as(events.BillingRecord, msg.data))
                    good.append(msg)
                except PermanentError as exc:
                    sys.stderr.write(f"skipping an unreadable record: {exc}\n")
                    await msg.term()
            stored += await asyncio.to_thread(store, db, records)
            seen += len(records)
            for msg in good:
                await msg.ack()
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        await nc.drain()
    sys.stderr.write(f"received {seen} records, {stored} new\n")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS server URL")
    parser.add_argument("--durable", default="billing-example", help="durable consumer name")
    parser.add_argument("--filter", default=subjects.BILLING_ALL, help="subject filter")
    parser.add_argument("--db", type=Path, default=Path("billing.sqlite"), help="SQLite file")
    parser.add_argument("--batch", type=int, default=256, help="records fetched at once")
    parser.add_argument("--once", action="store_true", help="stop when no record is waiting")
    parser.add_argument("--report", action="store_true", help="print totals and exit")
    args = parser.parse_args(argv)
    db = sqlite3.connect(args.db, check_same_thread=False)
    try:
        db.execute(SCHEMA)
        if not args.report:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await consume(args, db, stop)
        sys.stdout.write(report(db) + "\n")
    finally:
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
