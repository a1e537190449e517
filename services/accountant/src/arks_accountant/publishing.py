"""Billing records onto JetStream: a whole batch in flight at once, each one confirmed.

Every record goes out as a plain publish on the wire (`arks_accountant.wire`) with its
own reply subject under one inbox this process subscribes to once; JetStream answers
each with a PubAck (or an error), so a batch costs one socket write and one small reply
per record rather than a request round trip each. (JetStream's atomic batches, one reply
per batch, were measured slower here, and reject a batch holding a duplicate id.)

A `Bill` is a record already encoded: subject, header block and JSON body. The body is
exactly `BillingRecord.to_bytes()` and the headers are `BillingRecord.headers()` as
nats-py would encode them (`Bill.of()` builds one from the model; the tests compare it
with the fast encoding of `pricing.bill_for()`). Its `Nats-Msg-Id` is `bill-<request
id>`: publishing it again after a crash or a redelivery is dropped by the stream's
duplicate window (billing systems should still deduplicate by `id` beyond that window,
docs/billing.md). A record that is not confirmed within the timeout, or whose connection
is lost first, counts as not published; its usage event is redelivered and the record
published again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import orjson

from arks_accountant.wire import PayloadTooLarge, Wire, WireDown
from arks_common import events, subjects

log = logging.getLogger(__name__)

_NEWLINES = str.maketrans({"\r": " ", "\n": " "})
_HEADERS_HEAD = (
    f"NATS/1.0\r\n{events.TYPE_HEADER}: {events.BillingRecord.TYPE}\r\n"
    f"{events.VERSION_HEADER}: {events.BillingRecord.VERSION}\r\n"
    f"{events.MSG_ID_HEADER}: "
).encode()
_HEADERS_TAIL = b"\r\n\r\n"


def wire_bytes(record: events.BillingRecord) -> bytes:
    """`record.to_bytes()`, produced by pydantic-core directly (the tests check both give
    the same bytes)."""
    return record.model_dump_json().encode()


def billing_headers(record_id: str) -> bytes:
    """The header block nats-py writes for `BillingRecord.headers()` of this record id
    (nats-py strips a value and turns CR/LF inside it into spaces)."""
    value = record_id.strip()
    if "\r" in value or "\n" in value:
        value = value.translate(_NEWLINES)
    return b"%b%b%b" % (_HEADERS_HEAD, value.encode(), _HEADERS_TAIL)


class Bill(NamedTuple):
    """One billing record, encoded for the wire."""

    subject: bytes
    headers: bytes
    body: bytes
    record_id: str

    @classmethod
    def of(cls, record: events.BillingRecord) -> Bill:
        subject = subjects.billing_subject(
            record.namespace, quota=record.quota, token_name=record.token_name
        )
        return cls(subject.encode(), billing_headers(record.id), wire_bytes(record), record.id)


class Outgoing(Protocol):
    """A message for a stream: subject, header block (b"" for none) and body."""

    @property
    def subject(self) -> bytes: ...
    @property
    def headers(self) -> bytes: ...
    @property
    def body(self) -> bytes: ...


class PubAck(NamedTuple):
    """JetStream's answer to one publish: the sequence it is stored at (a duplicate's
    original one), or 0 with the error code and description."""

    seq: int
    error: int = 0
    description: str = ""


_NO_ANSWER = PubAck(0, 0, "no answer")


@dataclass
class _Waiting:
    """Replies one publish call waits for."""

    results: list[PubAck]
    remaining: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def settle(self, index: int, ack: PubAck) -> None:
        self.results[index] = ack
        self.remaining -= 1
        if self.remaining <= 0:
            self.done.set()


class JetStreamPublisher:
    """Publishes to streams over the wire: a whole batch in flight at once, each message
    with its own reply subject (one inbox subscription), each answer awaited."""

    def __init__(self, wire: Wire, *, timeout: float) -> None:
        self._wire = wire
        self._timeout = timeout
        self._prefix = b""
        self._tokens = itertools.count()
        self._waiting: dict[bytes, tuple[_Waiting, int]] = {}

    async def publish(self, messages: Sequence[Outgoing]) -> list[PubAck]:
        """Publish every message; per message, JetStream's answer (`seq` 0: not stored,
        including when no answer came within the timeout or the connection was lost)."""
        if not messages:
            return []
        self._subscribe()
        waiting = _Waiting([_NO_ANSWER] * len(messages))
        tokens: list[bytes] = []
        prefix, publish, pending = self._prefix, self._wire.publish, self._waiting
        try:
            for index, message in enumerate(messages):
                token = b"%d" % next(self._tokens)
                try:
                    publish(message.subject, message.body, prefix + token, message.headers)
                except PayloadTooLarge as exc:
                    waiting.results[index] = PubAck(0, 0, exc.message)
                    continue
                pending[token] = (waiting, index)
                tokens.append(token)
                waiting.remaining += 1
        except WireDown as exc:
            log.warning("publish to a stream failed: %s", exc.message)
        try:
            if waiting.remaining > 0:
                async with asyncio.timeout(self._timeout):
                    await waiting.done.wait()
        except TimeoutError:
            log.warning("%d stream publishes not confirmed in time", waiting.remaining)
        finally:
            for token in tokens:
                pending.pop(token, None)
        return waiting.results

    # ------------------------------------------------------------------ replies
    def _subscribe(self) -> None:
        if not self._prefix:
            inbox = self._wire.new_inbox()
            self._wire.subscribe(f"{inbox}.*", self._on_reply)
            self._wire.on_lost(self._on_lost)
            self._prefix = f"{inbox}.".encode()

    def _on_reply(self, subject: bytes, reply: bytes, headers: bytes, data: bytes) -> None:
        found = self._waiting.pop(subject[len(self._prefix) :], None)
        if found is None:
            return  # the call gave up on it already
        waiting, index = found
        waiting.settle(index, _answer(headers, data))

    def _on_lost(self) -> None:
        """Replies will not come over a new connection: fail what is waiting now."""
        lost, self._waiting = self._waiting, {}
        for waiting, index in lost.values():
            waiting.settle(index, PubAck(0, 0, "connection lost"))


def _answer(headers: bytes, data: bytes) -> PubAck:
    """A JetStream reply read as a PubAck (a duplicate counts: it is stored already)."""
    if headers:  # a status instead of an answer, e.g. 503: no stream takes this subject
        status = headers[9:].split(b"\r\n", 1)[0].decode(errors="replace")
        number = status.split(" ", 1)[0]
        return PubAck(0, int(number) if number.isdigit() else 0, status)
    try:
        answer = orjson.loads(data)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        return PubAck(0, 0, f"unreadable answer {data[:200]!r}")
    error = answer.get("error")
    if error is not None or "stream" not in answer:
        error = error if isinstance(error, dict) else {}
        code = error.get("err_code") or error.get("code") or 0
        return PubAck(0, code if type(code) is int else 0, str(error.get("description", answer)))
    seq = answer.get("seq")
    return PubAck(seq if type(seq) is int and seq > 0 else 1)


class BillingPublisher:
    """Billing records onto ARKS_BILLING, each confirmed (see the module docstring)."""

    def __init__(self, publisher: JetStreamPublisher) -> None:
        self._publisher = publisher

    async def publish(self, bills: Sequence[Bill]) -> list[bool]:
        """Publish every record; per record, whether JetStream stored it (or had it already)."""
        acks = await self._publisher.publish(bills)
        refused = [a for a in acks if not a.seq]
        if refused:
            log.warning(
                "%d of %d billing records not stored (first: %s %s)",
                len(refused),
                len(acks),
                refused[0].error,
                refused[0].description,
            )
        return [a.seq > 0 for a in acks]
