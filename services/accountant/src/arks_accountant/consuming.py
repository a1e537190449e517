"""The accountant's consumer lanes: pull batches of usage events over the wire, ack them.

A lane is one sequential loop: a pull request on the shared durable consumer, the batch
it brings, the handler's dispositions, then their acks and a PING, then the next pull
request. When all of a batch's acks were written on one connection, the PING's answer is
handed to `on_acks_sent`: once it resolves NATS has read those acks, which is what
`accounting.Lane` waits for before it forgets the batch's in-flight markers.

Fetching: one pull request per batch, `no_wait` with `expires` = `fetch_timeout`: it is
answered at once with what is there (up to `batch`), or, on a quiet stream, with the
first messages to arrive, so a busy stream gets full batches without waiting and a quiet
one costs one request per `fetch_timeout`; a request held by max_ack_pending ends at
expiry rather than waiting on the server forever.

Dispositions, as `Bus.consume` applies them: Ack (`+ACK`), Nak with a delay (`-NAK`),
DeadLetter (published to ARKS_DLQ with the reason through nats-py, then `+TERM`); a Nak
of a message delivered `max_deliver` times becomes a dead letter. A handler that raises
RetryableError naks the batch; any other exception is logged and naks it for 2 s.

Failure modes: while the connection is down (`WireDown`) the lane waits and retries; an
ack that cannot be written leaves its message to be redelivered after `ack_wait`, which
the handler recognises as a duplicate. A consumer that vanished (503 / 409 status) is
created again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from arks_accountant.deliveries import Delivery
from arks_accountant.wire import Wire, WireDown
from arks_common import messaging, subjects
from arks_common.errors import RetryableError
from arks_common.messaging import Ack, Bus, ConsumerSpec, DeadLetter, Disposition, Nak

log = logging.getLogger(__name__)

DeliveryHandler = Callable[[Sequence[Delivery]], Awaitable[Sequence[Disposition]]]

_API_PREFIX = "$JS.API"
_ACK = b"+ACK"
_TERM = b"+TERM"
_NAK = b"-NAK"
_REQUEST_SLACK = 2.0
_RETRY_DELAY = 0.5


def consumer_config(spec: ConsumerSpec) -> ConsumerConfig:
    """The durable consumer's configuration, as `Bus.consume` declares it."""
    return ConsumerConfig(
        durable_name=spec.durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=spec.ack_wait,
        max_deliver=spec.max_deliver,
        max_ack_pending=spec.max_ack_pending,
        filter_subject=spec.filter_subject,
    )


async def ensure_consumer(bus: Bus, spec: ConsumerSpec) -> None:
    """Create the durable consumer unless it exists (an existing one is used as it is)."""
    try:
        await bus.js.consumer_info(spec.stream, spec.durable)
        return
    except nats.js.errors.NotFoundError:
        pass
    try:
        await bus.js.add_consumer(spec.stream, consumer_config(spec))
    except nats.js.errors.BadRequestError:
        log.debug("consumer %s was created concurrently", spec.durable)


class Puller:
    """One lane's pull requests and the messages they bring, collected by a callback."""

    def __init__(
        self,
        wire: Wire,
        spec: ConsumerSpec,
        inbox: str,
        batch_size: Callable[[], int] | None = None,
    ) -> None:
        self._wire = wire
        self._spec = spec
        self._batch_size = batch_size
        self._inbox = inbox.encode()
        self._next = f"{_API_PREFIX}.CONSUMER.MSG.NEXT.{spec.stream}.{spec.durable}".encode()
        self._got: list[Delivery] = []
        self._want = 0
        self._waiter: asyncio.Future[None] | None = None
        self._sid = b""
        self.status = b""
        """The last status that ended a request (b"404", b"408", b"409", b"503"...)."""

    def __enter__(self) -> Puller:
        self._sid = self._wire.subscribe(self._inbox.decode(), self._on_message)
        self._wire.on_lost(self._on_lost)
        return self

    def __exit__(self, *exc: object) -> None:
        self._wire.off_lost(self._on_lost)
        with contextlib.suppress(WireDown):
            self._wire.unsubscribe(self._sid)

    async def fetch(self) -> list[Delivery]:
        """The next batch (possibly empty after `fetch_timeout` without messages)."""
        batch = self._batch_size() if self._batch_size is not None else self._spec.batch
        if not self._got:
            await self._request(batch, self._spec.fetch_timeout)
        got, self._got = self._got[:batch], self._got[batch:]
        return got

    async def _request(self, batch: int, wait: float) -> None:
        """One pull request. With `no_wait` and `expires` JetStream sends what is there
        at once (then a 404 status when that is fewer than `batch`), or, when nothing is,
        the first messages to arrive within `expires` (then a 404, or a 408 at expiry);
        a request stalled by max_ack_pending also ends at expiry. Either way the request
        is over when this returns, unless the answer was lost (then `status` is b"timeout"
        and late messages are kept for the next fetch)."""
        self.status = b""
        self._want = batch
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        body = b'{"batch":%d,"no_wait":true,"expires":%d}' % (batch, int(wait * 1e9))
        self._wire.publish(self._next, body, self._inbox)
        try:
            async with asyncio.timeout(wait + _REQUEST_SLACK):
                await waiter
        except TimeoutError:
            self.status = b"timeout"
        finally:
            self._waiter = None

    def _on_message(self, subject: bytes, reply: bytes, headers: bytes, data: bytes) -> None:
        if reply:
            self._got.append(Delivery(subject, reply, headers, data))
            if len(self._got) >= self._want:
                self._end(b"")
        elif headers[9:10] != b"1":  # 1xx: heartbeats, flow control; others end a request
            self._end(headers[9:12])

    def _end(self, status: bytes) -> None:
        self.status = status
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_lost(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(WireDown())


async def consume_lane(
    wire: Wire,
    bus: Bus,
    spec: ConsumerSpec,
    handler: DeliveryHandler,
    stop: asyncio.Event,
    *,
    inbox: str,
    on_acks_sent: Callable[[asyncio.Future[None]], None] | None = None,
    batch_size: Callable[[], int] | None = None,
) -> None:
    """Run one lane until `stop` is set (the batch in hand is finished first).

    After each batch's acks the lane writes a PING and hands its answer to
    `on_acks_sent`: once it resolves, NATS has read those acks. `batch_size`, when
    given, is asked before each pull how many messages to request (else `spec.batch`).
    """
    with Puller(wire, spec, inbox, batch_size) as puller:
        while not stop.is_set():
            try:
                batch = await puller.fetch()
            except WireDown:
                await _sleep_or_stop(stop, _RETRY_DELAY)
                continue
            if not batch:
                if puller.status not in (b"404", b"408", b""):
                    # 409/503: the consumer may be gone; no answer: the connection may be
                    log.warning("pull from %s answered %r", spec.durable, puller.status)
                    await _sleep_or_stop(stop, _RETRY_DELAY)
                    with contextlib.suppress(nats.errors.Error, OSError, TimeoutError):
                        await ensure_consumer(bus, spec)
                continue
            dispositions = await _dispose(handler, batch, spec)
            generation = wire.generation
            written = await settle(wire, bus, spec, batch, dispositions)
            if written and on_acks_sent is not None and wire.generation == generation:
                # all of this batch's acks went out on the connection this PING follows
                with contextlib.suppress(WireDown):
                    on_acks_sent(wire.ping_soon())


async def _dispose(
    handler: DeliveryHandler, batch: Sequence[Delivery], spec: ConsumerSpec
) -> Sequence[Disposition]:
    try:
        dispositions = await handler(batch)
    except RetryableError as exc:
        return [Nak(exc.delay)] * len(batch)
    except Exception:
        log.exception("batch handler failed for %s", spec.durable)
        return [Nak(2.0)] * len(batch)
    if len(dispositions) != len(batch):
        log.error("batch handler returned %d dispositions for %d", len(dispositions), len(batch))
        return [Nak(2.0)] * len(batch)
    return dispositions


async def settle(
    wire: Wire,
    bus: Bus,
    spec: ConsumerSpec,
    batch: Sequence[Delivery],
    dispositions: Sequence[Disposition],
) -> bool:
    """Ack, nak or dead-letter each message (written to the socket in one go); whether
    every one was written."""
    acked = 0
    try:
        for delivery, disposition in zip(batch, dispositions, strict=True):
            if type(disposition) is Ack:
                wire.publish(delivery.reply, _ACK)
                acked += 1
                continue
            if isinstance(disposition, Nak) and delivery.num_delivered < spec.max_deliver:
                nanos = int(disposition.delay * 1e9)
                wire.publish(delivery.reply, b'%b {"delay":%d}' % (_NAK, nanos) if nanos else _NAK)
                continue
            reason = (
                disposition.reason
                if isinstance(disposition, DeadLetter)
                else f"gave up after {delivery.num_delivered} deliveries"
            )
            if await dead_letter(bus, spec.stream, delivery, reason):
                wire.publish(delivery.reply, _TERM)
    except WireDown:
        # Un-acked messages are redelivered after ack_wait; the handler is idempotent.
        log.warning("could not settle %d messages: the nats connection is down", len(batch) - acked)
        return False
    return True


async def dead_letter(bus: Bus, stream: str, delivery: Delivery, reason: str) -> bool:
    """Publish a message to ARKS_DLQ with why and where from; whether it was stored."""
    headers = delivery.header_map()
    headers.pop("Nats-Msg-Id", None)
    headers.update(
        {
            messaging.REASON_HEADER: reason[:1000],
            messaging.ORIGIN_SUBJECT_HEADER: delivery.subject.decode(errors="replace"),
            messaging.ORIGIN_STREAM_HEADER: stream,
            messaging.ORIGIN_SEQ_HEADER: str(delivery.stream_sequence),
            messaging.DELIVERIES_HEADER: str(delivery.num_delivered),
        }
    )
    log.error("dead-lettering %s seq %s: %s", delivery.subject, delivery.stream_sequence, reason)
    try:
        await bus.js.publish(subjects.dlq_subject(stream), delivery.data, headers=headers)
    except (nats.errors.Error, OSError, TimeoutError) as exc:
        log.warning("dead-letter publish failed (%s); the message will be redelivered", exc)
        return False
    return True


async def _sleep_or_stop(stop: asyncio.Event, delay: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)
