"""The benchmark's baseline for the accountant's hot path: what `arks_accountant.wire.Wire`
offers, on nats-py's core connection (the `nats.aio.client.Client` that `Bus.connect`
made) instead of the accountant's own protocol code.

Issue 11 asked to decide the wire by measurement: `python -m bench accountant` runs the
unchanged accountant (pull logic in `consuming`, billing and ledger publishes in
`publishing`) on this adapter beside the real one (`make_lifespan(hot_path=...)`), and
the accountant keeps its wire only while nats-py's connection falls below 20,000 events/s
(docs/benchmarks.md has both figures). It is not used by the service.

How each operation maps onto nats-py's public API:

- `publish()` is synchronous for its callers (as on the wire): the message is queued and
  one task per loop turn awaits `Client.publish()` for each queued message, in order.
  Raw header blocks are turned into the dict nats-py encodes.
- `subscribe()` is `Client.subscribe(cb=...)`; the callback hands (subject, reply, raw
  header block, payload) to the wire-style handler (nats-py has parsed the headers into
  a dict; the block is rebuilt from it, inline status included).
- `ping_soon()` resolves once NATS has read everything queued before it: the queued
  publishes are handed to nats-py, then two `Client.flush()` round trips (nats-py writes
  its PING straight to the socket, ahead of commands still in its pending buffer; after
  the first PONG the flusher has written them, so the second PING follows them).
  A reconnect meanwhile fails it (`generation` is nats-py's reconnect count).
- `on_lost` callbacks run when `run()` sees the connection go down or come back as a new
  one (polled every 50 ms: nats-py's disconnect callback belongs to `Bus`).

Failure modes (of a baseline: enough to measure, not to run a service on): `WireDown`
from `publish()`/`ping_soon()` while nats-py is not connected;
`PayloadTooLarge` over the server's max_payload; a publish nats-py refuses later (closed,
buffer full) is logged and dropped (its message is redelivered or its reply never comes).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from arks_accountant.wire import LostHandler, MessageHandler, PayloadTooLarge, WireDown

log = logging.getLogger(__name__)

_STATUS = "Status"
_DESCRIPTION = "Description"
_POLL = 0.05


def header_block(headers: dict[str, str] | None) -> bytes:
    """nats-py's parsed headers as the raw block the wire hands over (status line first)."""
    if not headers:
        return b""
    status = headers.get(_STATUS)
    if status is None:
        head = "NATS/1.0\r\n"
        rest = headers
    else:
        description = headers.get(_DESCRIPTION, "")
        head = f"NATS/1.0 {status} {description}\r\n" if description else f"NATS/1.0 {status}\r\n"
        rest = {k: v for k, v in headers.items() if k not in (_STATUS, _DESCRIPTION)}
    lines = "".join(f"{k}: {v}\r\n" for k, v in rest.items())
    return f"{head}{lines}\r\n".encode()


def header_map(block: bytes) -> dict[str, str] | None:
    """A raw header block (no status line) as the dict nats-py's publish takes."""
    if not block:
        return None
    out: dict[str, str] = {}
    for line in block.decode().split("\r\n")[1:]:
        if line:
            name, _, value = line.partition(":")
            out[name] = value.strip()
    return out


class NatsLink:
    """See the module docstring."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._out: list[tuple[str, bytes, str, dict[str, str] | None]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._subs: dict[bytes, Subscription] = {}
        self._sids = itertools.count(1)
        self._on_lost: list[LostHandler] = []
        self._tasks: set[asyncio.Future[Any]] = set()

    # ------------------------------------------------------------------ state
    @property
    def generation(self) -> int:
        return int(self._nc.stats["reconnects"])

    @property
    def connected(self) -> bool:
        return bool(self._nc.is_connected)

    @property
    def max_payload(self) -> int:
        return int(self._nc.max_payload)

    def new_inbox(self) -> str:
        return self._nc.new_inbox()

    async def connect(self, deadline: float) -> None:
        """Nothing to do: `Bus.connect` connected nats-py already."""

    async def run(self, stop: asyncio.Event) -> None:
        """Tell `on_lost` callbacks when the connection went down or was replaced."""
        seen, up = self.generation, self.connected
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _POLL)
            generation, connected = self.generation, self.connected
            if (up and not connected) or (generation != seen and up):
                for callback in list(self._on_lost):
                    try:
                        callback()
                    except Exception:
                        log.exception("a nats connection-lost callback failed")
            seen, up = generation, connected

    async def close(self) -> None:
        """Hand what is queued to nats-py (the Bus closes the connection itself)."""
        with contextlib.suppress(Exception):
            await self._handed_over()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sub in list(self._subs.values()):
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        self._subs.clear()

    def on_lost(self, callback: LostHandler) -> None:
        self._on_lost.append(callback)

    def off_lost(self, callback: LostHandler) -> None:
        with contextlib.suppress(ValueError):
            self._on_lost.remove(callback)

    # ------------------------------------------------------------------ subscriptions
    def subscribe(self, subject: str, handler: MessageHandler) -> bytes:
        sid = b"%d" % next(self._sids)

        async def deliver(msg: Msg) -> None:
            handler(
                msg.subject.encode(),
                msg.reply.encode() if msg.reply else b"",
                header_block(msg.headers),
                msg.data,
            )

        async def start() -> None:
            self._subs[sid] = await self._nc.subscribe(subject, cb=deliver)

        self._spawn(start())
        return sid

    def unsubscribe(self, sid: bytes) -> None:
        sub = self._subs.pop(sid, None)
        if sub is not None:
            self._spawn(sub.unsubscribe())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ writing
    def publish(
        self, subject: bytes, payload: bytes, reply: bytes = b"", headers: bytes = b""
    ) -> None:
        if len(payload) + len(headers) > self.max_payload:
            raise PayloadTooLarge(
                f"{len(payload) + len(headers)} bytes to {subject!r} exceed the server's "
                f"max_payload of {self.max_payload}"
            )
        if not self._nc.is_connected:
            raise WireDown()
        self._out.append((subject.decode(), payload, reply.decode(), header_map(headers)))
        if self._flushing is None:
            self._flushing = asyncio.ensure_future(self._send())

    async def _send(self) -> None:
        try:
            while self._out:
                out, self._out = self._out, []
                publish = self._nc.publish
                for subject, payload, reply, headers in out:
                    await publish(subject, payload, reply, headers)
        except (nats.errors.Error, OSError) as exc:
            log.warning("nats-py refused a publish: %r", exc)
            self._out.clear()
        finally:
            self._flushing = None

    async def _handed_over(self) -> None:
        """Return once everything queued so far was handed to nats-py, in order."""
        while self._flushing is not None or self._out:
            if self._flushing is None:
                self._flushing = asyncio.ensure_future(self._send())
            await asyncio.shield(self._flushing)

    def ping_soon(self) -> asyncio.Future[None]:
        if not self._nc.is_connected:
            raise WireDown()
        generation = self.generation
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def confirm() -> None:
            try:
                await self._handed_over()
                await self._nc.flush(5)
                await self._nc.flush(5)
            except (nats.errors.Error, OSError) as exc:
                waiter.set_exception(WireDown(f"no answer to a ping: {exc!r}"))
                return
            if self.generation != generation or not self._nc.is_connected:
                waiter.set_exception(WireDown("the connection was replaced"))
            else:
                waiter.set_result(None)

        self._spawn(confirm())
        return waiter

    async def ping(self, within: float) -> None:
        waiter = self.ping_soon()
        async with asyncio.timeout(within):
            await waiter
