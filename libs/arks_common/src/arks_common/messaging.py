"""NATS and JetStream, the way every Arks service uses them.

- `Bus.connect()` retries the first connection with backoff (a service may start
  before NATS) and reconnects forever afterwards. It logs in as `settings.user` with
  its own reply-inbox prefix; credentials the server refuses are a PermanentError that
  names the settings to fix (retrying cannot help), and a permission the user lacks
  is logged as an error naming the user and the subject.
- `Bus.ensure_topology(role)` idempotently creates or updates the streams and KV
  buckets `role` owns (`arks_common.access`; every one without a role). Any service may
  still start first: what others own is waited for (KV watches retry, the router spools
  usage, consumers retry binding), each wait with a log line.
- `Bus.publish()` sends a versioned message with `Nats-Msg-Id` = its id, so retries
  are deduplicated by the stream.
- `Bus.consume()` runs a durable pull consumer: batches are fetched, handled, and each
  message is acked, nak'ed with a delay (RetryableError) or sent to the dead-letter
  stream with the reason and terminated (PermanentError, or too many deliveries).
- `Bus.watch()` yields a KV bucket's full state first (`KvSnapshot`), then changes
  (`KvChange`); after a reconnect it starts over with a fresh snapshot, so a consumer
  that replaces its state on every snapshot can never miss a change.
- `Bus.close()` unsubscribes pull subscriptions before draining: nats-py otherwise waits
  for its whole drain timeout on a subscription whose last fetch timed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    PubAck,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue

from arks_common import access, subjects, telemetry
from arks_common.errors import ArksError, PermanentError, RetryableError
from arks_common.events import Message
from arks_common.settings import NatsSettings

log = logging.getLogger(__name__)

DAY = 24 * 3600.0

REASON_HEADER = "Arks-Dead-Letter-Reason"
ORIGIN_SUBJECT_HEADER = "Arks-Origin-Subject"
ORIGIN_STREAM_HEADER = "Arks-Origin-Stream"
ORIGIN_SEQ_HEADER = "Arks-Origin-Seq"
DELIVERIES_HEADER = "Arks-Deliveries"

STREAMS: tuple[StreamConfig, ...] = (
    StreamConfig(
        name=subjects.USAGE_STREAM,
        subjects=[subjects.USAGE_ALL],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=7 * DAY,
        duplicate_window=2 * 3600.0,
        description="One UsageRecorded per finished request.",
    ),
    StreamConfig(
        name=subjects.BILLING_STREAM,
        subjects=[subjects.BILLING_ALL],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=30 * DAY,
        duplicate_window=2 * 3600.0,
        description="Priced usage records for billing systems.",
    ),
    StreamConfig(
        name=subjects.MODEL_JOBS_STREAM,
        subjects=[subjects.MODEL_JOBS_ALL],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        duplicate_window=600.0,
        description="Model download requests.",
    ),
    StreamConfig(
        name=subjects.MODEL_EVENTS_STREAM,
        subjects=[subjects.MODEL_PROGRESS_ALL, subjects.MODEL_RESULT_ALL],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=DAY,
        max_msgs_per_subject=20,
        duplicate_window=600.0,
        description="Model download progress and results.",
    ),
    StreamConfig(
        name=subjects.RESOURCE_EVENTS_STREAM,
        subjects=[subjects.RESOURCE_STATUS_ALL],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=7 * DAY,
        max_msgs_per_subject=50,
        duplicate_window=600.0,
        description="Status changes of arks.ai resources.",
    ),
    StreamConfig(
        name=subjects.DLQ_STREAM,
        subjects=[subjects.DLQ_ALL],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=30 * DAY,
        description="Messages a consumer could not process, with the reason.",
    ),
)

BUCKETS: tuple[KeyValueConfig, ...] = (
    KeyValueConfig(bucket=subjects.RESOURCES_BUCKET, history=5, storage=StorageType.FILE),
    KeyValueConfig(bucket=subjects.ROUTES_BUCKET, history=1, storage=StorageType.FILE),
    KeyValueConfig(bucket=subjects.TOKENS_BUCKET, history=1, storage=StorageType.FILE),
    KeyValueConfig(bucket=subjects.QUOTAS_BUCKET, history=1, storage=StorageType.FILE),
    KeyValueConfig(bucket=subjects.QUOTA_STATE_BUCKET, history=1, storage=StorageType.FILE),
    KeyValueConfig(bucket=subjects.LEDGER_BUCKET, history=1, storage=StorageType.FILE),
    KeyValueConfig(bucket=subjects.REPLICAS_BUCKET, history=1, storage=StorageType.FILE),
)


_AUTH_ERRORS = ("authorization violation", "authentication", "user authentication expired")


def auth_refused_message(settings: NatsSettings) -> str:
    """What to tell an operator whose credentials NATS refused."""
    if settings.user is None:
        return f"NATS at {settings.url} requires a user: set ARKS_NATS__USER / ARKS_NATS__PASSWORD"
    return (
        f"NATS at {settings.url} refused user {settings.user!r}: "
        "check ARKS_NATS__USER / ARKS_NATS__PASSWORD"
    )


# ----------------------------------------------------------------------------- KV watch


@dataclass(frozen=True)
class KvSnapshot:
    """The whole bucket (matching the watched keys) at one moment: replace your state."""

    entries: dict[str, bytes]
    revisions: dict[str, int] = field(default_factory=dict, compare=False)
    """KV revision of each entry (what the store uses as resourceVersion)."""


@dataclass(frozen=True)
class KvChange:
    """One key changed after the snapshot; `value` is None when it was deleted."""

    key: str
    value: bytes | None
    revision: int


KvUpdate = KvSnapshot | KvChange

# ----------------------------------------------------------------------------- consumption


@dataclass(frozen=True)
class Ack:
    pass


@dataclass(frozen=True)
class Nak:
    delay: float = 1.0


@dataclass(frozen=True)
class DeadLetter:
    reason: str


Disposition = Ack | Nak | DeadLetter
BatchHandler = Callable[[Sequence[Msg]], Awaitable[Sequence[Disposition]]]
MessageHandler = Callable[[Msg], Awaitable[None]]


def per_message(handler: MessageHandler) -> BatchHandler:
    """Adapt a one-message handler: return → ack, RetryableError → nak(delay),
    PermanentError → dead letter; anything else is logged and retried later."""

    async def handle(batch: Sequence[Msg]) -> Sequence[Disposition]:
        out: list[Disposition] = []
        for msg in batch:
            out.append(await _dispose(handler, msg))
        return out

    return handle


async def _dispose(handler: MessageHandler, msg: Msg) -> Disposition:
    try:
        await handler(msg)
    except RetryableError as exc:
        return Nak(exc.delay)
    except PermanentError as exc:
        return DeadLetter(exc.message)
    except Exception:
        # A bug or an unclassified failure: keep the message (it is retried and
        # dead-lettered after max_deliver), and say loudly what happened.
        log.exception("unexpected error handling %s", msg.subject)
        return Nak(2.0)
    return Ack()


@dataclass
class ConsumerSpec:
    stream: str
    durable: str
    filter_subject: str
    batch: int = 100
    max_ack_pending: int = 1000
    ack_wait: float = 30.0
    max_deliver: int = 10
    fetch_timeout: float = 1.0


@dataclass
class _State:
    generation: int = 0
    """Bumped on every reconnect: watchers started before it must resync."""
    connected: bool = True


class Bus:
    """One NATS connection with JetStream, shared by a service's tasks."""

    def __init__(self, nc: NATS, settings: NatsSettings) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=settings.request_timeout)
        self.settings = settings
        self._state = _State()
        self._pull_subs: list[JetStreamContext.PullSubscription] = []

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    async def connect(cls, settings: NatsSettings, *, name: str) -> Bus:
        """Connect, retrying with backoff until `settings.connect_deadline` passes."""
        state = _State()

        async def on_disconnect() -> None:
            state.connected = False
            log.warning("nats disconnected")

        async def on_reconnect() -> None:
            state.connected = True
            state.generation += 1
            log.info("nats reconnected")

        refused = asyncio.Event()

        async def on_error(exc: Exception) -> None:
            text = str(exc).lower()
            if isinstance(exc, nats.errors.AuthorizationError) or any(
                marker in text for marker in _AUTH_ERRORS
            ):
                refused.set()
                log.error("%s", auth_refused_message(settings))
            elif "permissions violation" in text:
                log.error("NATS denied user %r: %s (see docs/security.md)", settings.user, exc)
            else:
                log.debug("nats error: %s", exc)

        password = settings.password.get_secret_value() if settings.password else None
        # With unlimited reconnect attempts nats-py also retries the *first* connection
        # forever (every reconnect_time_wait), so the deadline is ours to enforce.
        nc = NATS()
        connecting = asyncio.ensure_future(
            nc.connect(
                servers=settings.servers,
                name=name,
                user=settings.user,
                password=password,
                inbox_prefix=settings.inbox_prefix,
                # nats-py annotates these as int but takes seconds as floats.
                connect_timeout=settings.connect_timeout,  # type: ignore[arg-type]
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,  # type: ignore[arg-type]
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
                error_cb=on_error,
            )
        )
        watching = asyncio.ensure_future(refused.wait())
        try:
            done, _ = await asyncio.wait(
                {connecting, watching},
                timeout=settings.connect_deadline,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if connecting in done:
                connecting.result()
            elif watching in done:
                raise PermanentError(auth_refused_message(settings))
            else:
                raise RetryableError(f"cannot reach NATS at {settings.url}")
        except (OSError, nats.errors.Error, TimeoutError, ArksError) as exc:
            for task in (connecting, watching):
                task.cancel()
            await asyncio.gather(connecting, watching, return_exceptions=True)
            with contextlib.suppress(Exception):
                await nc.close()  # the half-open socket of the last attempt
            if isinstance(exc, ArksError):
                raise
            raise RetryableError(f"cannot reach NATS at {settings.url}: {exc!r}") from exc
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
        bus = cls(nc, settings)
        bus._state = state
        return bus

    @property
    def connected(self) -> bool:
        return self.nc.is_connected

    async def close(self, drain_timeout: float = 5.0) -> None:
        for sub in self._pull_subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._pull_subs.clear()
        if self.nc.is_closed:
            return
        try:
            async with asyncio.timeout(drain_timeout):
                await self.nc.drain()
        except (TimeoutError, nats.errors.Error):
            await self.nc.close()

    # ------------------------------------------------------------------ topology
    async def ensure_topology(self, role: access.NatsRole | None = None) -> None:
        """Create or update the streams and buckets `role` owns (all of them without a
        role); safe to call from many services at once."""
        for config in STREAMS:
            assert config.name is not None
            if role is None or role.owns_stream(config.name):
                await self.ensure_stream(config)
        for bucket in BUCKETS:
            if role is None or role.owns_bucket(bucket.bucket):
                await self.ensure_bucket(bucket)

    async def ensure_own_topology(self, service: str) -> None:
        """What the service with NATS role `service` (`access.ROUTER`, ...) owns, when
        it logs in as a user; everything on an anonymous connection, where no service
        could wait for an owner that holds more rights than it does."""
        await self.ensure_topology(access.ROLES[service] if self.settings.user else None)

    async def ensure_stream(self, config: StreamConfig) -> None:
        assert config.name is not None
        try:
            await self.js.stream_info(config.name)
        except nats.js.errors.NotFoundError:
            try:
                await self.js.add_stream(config)
                return
            except nats.js.errors.BadRequestError:
                pass  # created concurrently by another service: update below
        await self.js.update_stream(config)

    async def ensure_bucket(self, config: KeyValueConfig) -> KeyValue:
        try:
            return await self.js.key_value(config.bucket)
        except nats.js.errors.BucketNotFoundError:
            return await self.js.create_key_value(config)

    async def kv(self, bucket: str) -> KeyValue:
        return await self.js.key_value(bucket)

    # ------------------------------------------------------------------ publishing
    async def publish(
        self,
        subject: str,
        message: Message,
        *,
        headers: dict[str, str] | None = None,
        ack_timeout: float | None = None,
        payload: bytes | None = None,
    ) -> PubAck:
        """Publish to JetStream and wait for the stream's ack (dedup by message id).

        `payload`: `message.to_bytes()` when the caller has it already (not encoded again).
        """
        all_headers = {**message.headers(), **telemetry.inject_trace_headers(), **(headers or {})}
        try:
            return await self.js.publish(
                subject,
                message.to_bytes() if payload is None else payload,
                headers=all_headers,
                timeout=ack_timeout or self.settings.request_timeout,
            )
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise RetryableError(f"publish to {subject} failed: {exc}") from exc

    async def publish_core(self, subject: str, message: Message) -> None:
        """Fire-and-forget core NATS publish, for frequent, superseded facts (load)."""
        await self.nc.publish(subject, message.to_bytes(), headers=message.headers())

    # ------------------------------------------------------------------ consuming
    async def consume(
        self,
        spec: ConsumerSpec,
        handler: BatchHandler,
        *,
        stop: asyncio.Event,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        """Fetch batches from a durable pull consumer until `stop` is set."""
        config = ConsumerConfig(
            durable_name=spec.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=spec.ack_wait,
            max_deliver=spec.max_deliver,
            max_ack_pending=spec.max_ack_pending,
            filter_subject=spec.filter_subject,
        )
        sub = await self._pull_subscribe(spec, config, stop)
        if on_ready is not None:
            on_ready()
        try:
            while not stop.is_set():
                try:
                    batch = await sub.fetch(spec.batch, timeout=spec.fetch_timeout)
                except TimeoutError:
                    # nats.errors.TimeoutError, and the plain asyncio one nats-py lets
                    # escape from fetch now and then: both mean "nothing yet".
                    continue
                except (nats.errors.Error, OSError) as exc:
                    log.warning("fetch from %s failed (%r); retrying", spec.durable, exc)
                    await _sleep_or_stop(stop, 0.5)
                    continue
                await self._handle_batch(spec, batch, handler)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            with contextlib.suppress(ValueError):
                self._pull_subs.remove(sub)

    async def _pull_subscribe(
        self, spec: ConsumerSpec, config: ConsumerConfig, stop: asyncio.Event
    ) -> JetStreamContext.PullSubscription:
        while True:
            try:
                sub = await self.js.pull_subscribe(
                    spec.filter_subject, durable=spec.durable, stream=spec.stream, config=config
                )
                self._pull_subs.append(sub)
                return sub
            except (nats.errors.Error, OSError) as exc:
                if stop.is_set():
                    raise
                log.warning("cannot bind consumer %s yet: %s", spec.durable, exc)
                await _sleep_or_stop(stop, 0.5)

    async def _handle_batch(
        self, spec: ConsumerSpec, batch: Sequence[Msg], handler: BatchHandler
    ) -> None:
        try:
            dispositions = await handler(batch)
        except RetryableError as exc:
            dispositions = [Nak(exc.delay)] * len(batch)
        except Exception:
            log.exception("batch handler failed for %s", spec.durable)
            dispositions = [Nak(2.0)] * len(batch)
        if len(dispositions) != len(batch):
            raise PermanentError("batch handler must return one disposition per message")
        for msg, disposition in zip(batch, dispositions, strict=True):
            if isinstance(disposition, Nak) and msg.metadata.num_delivered >= spec.max_deliver:
                disposition = DeadLetter(f"gave up after {msg.metadata.num_delivered} deliveries")
            await self._settle(spec, msg, disposition)

    async def _settle(self, spec: ConsumerSpec, msg: Msg, disposition: Disposition) -> None:
        try:
            if isinstance(disposition, Ack):
                await msg.ack()
            elif isinstance(disposition, Nak):
                await msg.nak(delay=disposition.delay)
            else:
                await self.dead_letter(spec.stream, msg, disposition.reason)
                await msg.term()
        except (nats.errors.Error, OSError, RetryableError) as exc:
            # The message stays un-acked and is redelivered after ack_wait; the
            # handler is idempotent, so that is safe.
            log.warning("could not settle message on %s: %s", msg.subject, exc)

    async def dead_letter(self, stream: str, msg: Msg, reason: str) -> None:
        headers = dict(msg.headers or {})
        headers.pop("Nats-Msg-Id", None)
        headers.update(
            {
                REASON_HEADER: reason[:1000],
                ORIGIN_SUBJECT_HEADER: msg.subject,
                ORIGIN_STREAM_HEADER: stream,
                ORIGIN_SEQ_HEADER: str(msg.metadata.sequence.stream),
                DELIVERIES_HEADER: str(msg.metadata.num_delivered),
            }
        )
        log.error("dead-lettering %s seq %s: %s", msg.subject, msg.metadata.sequence.stream, reason)
        try:
            await self.js.publish(subjects.dlq_subject(stream), msg.data, headers=headers)
        except (nats.errors.Error, OSError) as exc:
            raise RetryableError(f"dead-letter publish failed: {exc}") from exc

    # ------------------------------------------------------------------ KV watch
    async def watch(
        self, bucket: str, *, keys: str = ">", stop: asyncio.Event | None = None
    ) -> AsyncGenerator[KvUpdate, None]:
        """Snapshot, then changes; a fresh snapshot after every reconnect or watch failure."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            generation = self._state.generation
            try:
                kv = await self.js.key_value(bucket)
                watcher: Any = await kv.watch(keys)
            except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
                log.warning("cannot watch %s yet: %s", bucket, exc)
                await _sleep_or_stop(stop, 0.5)
                continue
            try:
                async for update in self._watch_once(watcher, stop, generation):
                    yield update
            finally:
                await _stop_watcher(watcher)

    async def _watch_once(
        self, watcher: Any, stop: asyncio.Event, generation: int
    ) -> AsyncIterator[KvUpdate]:
        snapshot: dict[str, bytes] = {}
        revisions: dict[str, int] = {}
        initial = True
        while not stop.is_set():
            if self._state.generation != generation:
                return  # the ordered consumer may be gone with the old server: resync
            try:
                entry = await watcher.updates(timeout=0.5)
            except nats.errors.TimeoutError:
                continue
            if entry is None:
                if initial:
                    initial = False
                    yield KvSnapshot(dict(snapshot), dict(revisions))
                continue
            deleted = entry.operation in ("DEL", "PURGE")
            if initial:
                if deleted:
                    snapshot.pop(entry.key, None)
                    revisions.pop(entry.key, None)
                else:
                    snapshot[entry.key] = entry.value or b""
                    revisions[entry.key] = entry.revision
            else:
                yield KvChange(entry.key, None if deleted else (entry.value or b""), entry.revision)


async def _stop_watcher(watcher: Any) -> None:
    """Stop a KV watcher, and make sure its subscription task ends with it.

    nats-py's watch callback waits for the watcher's set-up with `asyncio.wait_for`,
    which on Python 3.11 swallows a cancellation that arrives in the loop turn the
    set-up completes: the task then delivers its message and goes back to waiting for
    the next one, its cancellation spent, while `stop()` has already removed the
    subscription, so nothing cancels it again and it waits until the process ends. A
    watcher stopped right after `kv.watch()` returned (the service stopping, or a
    reconnect, while the watch was being set up) hits exactly that turn; the task is
    therefore cancelled again until it has ended.
    """
    with contextlib.suppress(Exception):
        await watcher.stop()
    task = getattr(getattr(watcher, "_sub", None), "_wait_for_msgs_task", None)
    for _ in range(100):
        if not isinstance(task, asyncio.Task) or task.done():
            return
        task.cancel()
        await asyncio.wait([task], timeout=0.05)
    log.warning("a KV watcher's subscription task did not end")


async def _sleep_or_stop(stop: asyncio.Event, delay: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)
