"""A lean NATS client connection for the accountant's hot path: pull, ack, publish.

nats-py spends about 30 µs of Python per JetStream message it delivers and acks (a `Msg`
object with parsed headers, a task per `next_msg`, a coroutine per ack), more than the
accountant does with the event itself. This connection speaks the NATS client protocol
directly for the three things done per usage event: receiving the messages of a pull
request, acking them, and publishing a billing record with a reply subject. One pass of
the parser per socket read hands each message to a plain callback; everything written
in one event-loop turn goes out in one socket write. Streams, consumers, KV, notices and
dead letters stay on nats-py (`arks_common.messaging.Bus`).

Protocol subset: INFO, CONNECT (headers, no_responders; user/password or token from the
URL, else the `user`/`password` given, i.e. `ARKS_NATS__USER`/`ARKS_NATS__PASSWORD`),
PING/PONG, SUB/UNSUB, PUB/HPUB, MSG/HMSG, +OK, -ERR. A `tls://` URL, or a server that
requires TLS, is upgraded after INFO with the given (default) SSL context. Reply
subjects are made under `inbox_prefix` (`new_inbox()`; `ARKS_NATS__INBOX_PREFIX`), so a
user whose permissions allow only its own inbox subjects can pull and publish.

Failure modes: `WireDown` (a RetryableError) from `publish()` and `ping()` while there is
no connection or when it is lost; `PayloadTooLarge` for a message over the server's
max_payload (the server would close the connection). `NotAuthorized` (a PermanentError
naming the settings to fix) from `connect()` when the server answers the CONNECT with an
authorization violation; `run()` logs that as an error and keeps trying (credentials may
be fixed on the server). A permissions violation (a subject the user may not use) is
logged as an error with the server's words; the connection stays. `on_lost` callbacks
tell whoever waits for replies that they will not come. `run()` keeps the connection: it
pings it (a dead peer is dropped after `ping_interval`), reconnects to the servers in
turn after a loss (0.5 s apart) and re-subscribes. `generation` counts connection
attempts, so a caller can tell whether two writes went over the same connection (NATS
reads a connection's commands in order).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import orjson

from arks_common.errors import PermanentError, RetryableError

log = logging.getLogger(__name__)

MessageHandler = Callable[[bytes, bytes, bytes, bytes], None]
"""Called with (subject, reply, raw header block or b"", payload) for each message."""

LostHandler = Callable[[], None]

_CRLF = b"\r\n"
_PING = b"PING\r\n"
_PUB = b"PUB %b %b %d\r\n%b\r\n"
_PUB_NO_REPLY = b"PUB %b%b %d\r\n%b\r\n"
_HPUB = b"HPUB %b %b %d %d\r\n%b%b\r\n"
_HPUB_NO_REPLY = b"HPUB %b%b %d %d\r\n%b%b\r\n"
_PONG = b"PONG\r\n"
_H, _M, _P, _I, _PLUS, _MINUS = (ord(c) for c in "HMPI+-")
_MAX_CONTROL_LINE = 1 << 20
_RECONNECT_WAIT = 0.5
_LANG = "python-arks-wire"
_AUTHORIZATION_VIOLATION = "authorization violation"
_PERMISSIONS_VIOLATION = "permissions violation"


class WireDown(RetryableError):
    """No connection to NATS (yet, or any more): retry once it is back."""

    def __init__(self, message: str = "nats connection is down") -> None:
        super().__init__(message, delay=_RECONNECT_WAIT)


class NotAuthorized(PermanentError):
    """The server refused the connection's credentials (or wanted some): a setting is wrong."""


class PayloadTooLarge(PermanentError):
    """A message larger than the server's max_payload (the server would drop the
    connection for it, so it is refused here)."""


@dataclass(frozen=True)
class Server:
    """One NATS server URL, parsed: `nats://[user:password@|token@]host[:port]` or `tls://`."""

    host: str
    port: int
    tls: bool
    user: str | None = None
    password: str | None = None
    token: str | None = None
    from_url: bool = field(default=False, compare=False)
    """Whether the credentials came from the URL (error messages say which setting)."""

    @classmethod
    def parse(cls, url: str, user: str | None = None, password: str | None = None) -> Server:
        """`url`'s credentials when it has some (as nats-py), else `user`/`password`."""
        parts = urlsplit(url if "://" in url else f"nats://{url}")
        if parts.scheme not in ("nats", "tls"):
            raise PermanentError(f"unsupported NATS URL scheme in {url!r}")
        host, port, tls = parts.hostname or "127.0.0.1", parts.port or 4222, parts.scheme == "tls"
        if not parts.username:
            return cls(host, port, tls, user=user, password=password if user else None)
        name = unquote(parts.username)
        secret = unquote(parts.password) if parts.password else None
        if secret is None:
            return cls(host, port, tls, token=name, from_url=True)
        return cls(host, port, tls, user=name, password=secret, from_url=True)

    @property
    def credentials(self) -> str:
        """Where this server's credentials come from, for error messages."""
        if self.token is not None:
            return "the token in ARKS_NATS__URL"
        if self.user is None:
            return "none (set ARKS_NATS__USER and ARKS_NATS__PASSWORD)"
        if self.from_url:
            return f"user {self.user!r} and its password in ARKS_NATS__URL"
        return f"user {self.user!r} (ARKS_NATS__USER) and ARKS_NATS__PASSWORD"

    def connect_options(self, name: str) -> dict[str, Any]:
        options: dict[str, Any] = {
            "verbose": False,
            "pedantic": False,
            "headers": True,
            "no_responders": True,
            "protocol": 1,
            "lang": _LANG,
            "version": "1",
            "name": name,
        }
        if self.token is not None:
            options["auth_token"] = self.token
        elif self.user is not None:
            options["user"] = self.user
            options["pass"] = self.password or ""
        return options


class _Connection(asyncio.Protocol):
    """One TCP connection: parses what the server sends, and remembers PONGs owed."""

    def __init__(self, wire: Wire) -> None:
        self._wire = wire
        self._buf = b""
        self.transport: asyncio.Transport | None = None
        self.info: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pongs: deque[asyncio.Future[None]] = deque()
        self.error = ""

    # ------------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        reason = self.error or (str(exc) if exc else "closed by the server")
        down = WireDown(f"nats connection lost: {reason}")
        waiters: list[asyncio.Future[Any]] = [self.info, *self.pongs]
        for future in waiters:
            if not future.done():
                future.set_exception(down)
                future.exception()  # retrieved: nobody may be waiting any more
        self.pongs.clear()
        if not self.lost.done():
            self.lost.set_result(None)
        self._wire._connection_lost(self)

    def data_received(self, data: bytes) -> None:
        if self._buf:
            data = self._buf + data
            self._buf = b""
        try:
            pos = self._parse(data)
        except (ValueError, IndexError) as exc:
            log.error("nats protocol error (%s); dropping the connection", exc)
            self.close()
            return
        if pos < len(data):
            if len(data) - pos > _MAX_CONTROL_LINE and data.find(_CRLF, pos) < 0:
                log.error("nats control line too long; dropping the connection")
                self.close()
                return
            self._buf = data[pos:]

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    # ------------------------------------------------------------------ parsing
    def _parse(self, data: bytes) -> int:
        """Handle every complete command in `data`; the offset of the first incomplete one."""
        subs = self._wire._handlers
        pos, size = 0, len(data)
        while pos < size:
            eol = data.find(_CRLF, pos)
            if eol < 0:
                return pos
            op = data[pos]
            if op == _H:  # HMSG <subject> <sid> [reply] <header bytes> <total bytes>
                args = data[pos + 5 : eol].split()
                start = eol + 2
                stop = start + int(args[-1])
                if stop + 2 > size:
                    return pos
                split = start + int(args[-2])
                handler = subs.get(args[1])
                if handler is not None:
                    reply = args[2] if len(args) == 5 else b""
                    self._deliver(handler, args[0], reply, data[start:split], data[split:stop])
                pos = stop + 2
            elif op == _M:  # MSG <subject> <sid> [reply] <bytes>
                args = data[pos + 4 : eol].split()
                start = eol + 2
                stop = start + int(args[-1])
                if stop + 2 > size:
                    return pos
                handler = subs.get(args[1])
                if handler is not None:
                    reply = args[2] if len(args) == 4 else b""
                    self._deliver(handler, args[0], reply, b"", data[start:stop])
                pos = stop + 2
            else:
                self._control(op, data[pos:eol])
                pos = eol + 2
        return pos

    @staticmethod
    def _deliver(
        handler: MessageHandler, subject: bytes, reply: bytes, headers: bytes, payload: bytes
    ) -> None:
        try:
            handler(subject, reply, headers, payload)
        except Exception:
            log.exception("a nats message handler failed on %r", subject)

    def _control(self, op: int, line: bytes) -> None:
        if op == _P:
            if line.startswith(b"PING"):
                self.write(_PONG)
            elif self.pongs:
                waiter = self.pongs.popleft()
                if not waiter.done():
                    waiter.set_result(None)
        elif op == _I:
            info = orjson.loads(line[5:])
            if not self.info.done():
                self.info.set_result(info)
        elif op == _MINUS:
            error = line.decode(errors="replace")
            if _PERMISSIONS_VIOLATION in error.lower():
                # the connection stays, but what was refused will never work: say so loudly
                log.error("nats refused a command of %s: %s", self._wire.name, error)
                return
            self.error = error
            log.warning("nats server error: %s", self.error)
        elif op != _PLUS:
            raise ValueError(f"unexpected {line[:40]!r}")

    # ------------------------------------------------------------------ writing
    def write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise WireDown()
        self.transport.write(data)


class Wire:
    """A NATS connection that callers write to synchronously; see the module docstring."""

    def __init__(
        self,
        servers: list[str],
        *,
        name: str,
        connect_timeout: float = 2.0,
        ping_interval: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        user: str | None = None,
        password: str | None = None,
        inbox_prefix: str = "_INBOX",
    ) -> None:
        if not servers:
            raise PermanentError("no NATS server configured")
        self._servers = [Server.parse(url, user, password) for url in servers]
        self.name = name
        self.inbox_prefix = inbox_prefix
        self._connect_timeout = connect_timeout
        self._ping_interval = ping_interval
        self._ssl_context = ssl_context
        self._conn: _Connection | None = None
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._subjects: dict[bytes, bytes] = {}
        self._handlers: dict[bytes, MessageHandler] = {}
        self._sids = itertools.count(1)
        self._on_lost: list[LostHandler] = []
        self._closed = False
        self._up = False
        """A connection is established and not lost (checked on every write)."""
        self._max_payload = 1 << 20
        self.generation = 0
        """Bumped by every (re)connection."""

    # ------------------------------------------------------------------ lifecycle
    @property
    def connected(self) -> bool:
        return self._up

    @property
    def max_payload(self) -> int:
        """The largest message the server takes (from its INFO; 1 MiB before connecting)."""
        return self._max_payload

    def new_inbox(self) -> str:
        """A fresh reply subject prefix under `inbox_prefix` (subscribe to `<it>.*`)."""
        return f"{self.inbox_prefix}.{secrets.token_hex(11)}"

    async def connect(self, deadline: float) -> None:
        """The first connection, trying the servers in turn until `deadline` seconds pass;
        `NotAuthorized` at once if a server refuses the credentials."""
        try:
            async with asyncio.timeout(deadline):
                while True:
                    if await self._connect_once():
                        return
                    await asyncio.sleep(_RECONNECT_WAIT)
        except TimeoutError as exc:
            raise RetryableError(f"cannot reach NATS at {self._servers[0].host}") from exc

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the connection until `stop`: ping it, and reconnect whenever it is lost."""
        while not stop.is_set():
            conn = self._conn
            if conn is None or conn.lost.done():
                try:
                    connected = await self._connect_once()
                except NotAuthorized as exc:
                    log.error("%s; retrying", exc.message)
                    connected = False
                if not connected:
                    await _wait(stop, _RECONNECT_WAIT)
                continue
            if await _wait(stop, self._ping_interval, conn.lost):
                continue
            with contextlib.suppress(WireDown):
                try:
                    await self.ping(self._ping_interval)
                except TimeoutError:
                    log.warning(
                        "nats did not answer a ping in %.0f s; reconnecting", self._ping_interval
                    )
                    conn.close()

    async def close(self) -> None:
        self._closed = True
        self._flush()  # what the lanes wrote last (acks) goes out before the connection closes
        conn, self._conn = self._conn, None
        self._up = False
        if conn is not None and conn.transport is not None:
            conn.transport.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(conn.lost), 2.0)
            conn.close()

    async def _connect_once(self) -> bool:
        if self._closed:
            return False
        server = self._servers[self.generation % len(self._servers)]
        loop = asyncio.get_running_loop()
        conn = _Connection(self)
        try:
            async with asyncio.timeout(self._connect_timeout):
                await loop.create_connection(lambda: conn, server.host, server.port)
                info = await conn.info
                if server.tls or info.get("tls_required"):
                    context = self._ssl_context or ssl.create_default_context()
                    assert conn.transport is not None
                    upgraded = await loop.start_tls(
                        conn.transport, conn, context, server_hostname=server.host
                    )
                    if upgraded is None:
                        raise WireDown("TLS upgrade failed")
                    conn.transport = upgraded
                hello = [b"CONNECT ", orjson.dumps(server.connect_options(self.name)), _CRLF]
                for sid, subject in self._subjects.items():
                    hello.append(b"SUB %b %b\r\n" % (subject, sid))
                pong = loop.create_future()
                conn.pongs.append(pong)
                hello.append(_PING)
                conn.write(b"".join(hello))
                await pong
        except (OSError, TimeoutError, WireDown, ssl.SSLError) as exc:
            conn.close()
            self.generation += 1  # the next attempt tries the next server
            if _AUTHORIZATION_VIOLATION in conn.error.lower():
                raise NotAuthorized(
                    f"NATS at {server.host}:{server.port} refused the connection of "
                    f"{self.name} ({conn.error.removeprefix('-ERR ')}); credentials given: "
                    f"{server.credentials}"
                ) from exc
            log.warning("cannot connect to nats at %s:%s: %s", server.host, server.port, exc)
            return False
        self.generation += 1
        self._conn = conn
        self._max_payload = int(info.get("max_payload") or self._max_payload)
        self._up = not conn.lost.done()
        self._out.clear()  # commands queued for the lost connection are not replayed
        log.info("nats wire connected to %s:%s", server.host, server.port)
        return True

    def _connection_lost(self, conn: _Connection) -> None:
        if conn is not self._conn:
            return
        self._up = False
        log.warning("nats wire connection lost%s", f": {conn.error}" if conn.error else "")
        self._out.clear()
        for callback in list(self._on_lost):
            try:
                callback()
            except Exception:
                log.exception("a nats connection-lost callback failed")

    def on_lost(self, callback: LostHandler) -> None:
        """`callback()` runs (synchronously) whenever the current connection is lost."""
        self._on_lost.append(callback)

    def off_lost(self, callback: LostHandler) -> None:
        with contextlib.suppress(ValueError):
            self._on_lost.remove(callback)

    # ------------------------------------------------------------------ subscriptions
    def subscribe(self, subject: str, handler: MessageHandler) -> bytes:
        """Deliver messages on `subject` to `handler` (kept across reconnects); the sid."""
        sid = str(next(self._sids)).encode()
        self._subjects[sid] = subject.encode()
        self._handlers[sid] = handler
        if self.connected:
            self._write(b"SUB %b %b\r\n" % (subject.encode(), sid))
        return sid

    def unsubscribe(self, sid: bytes) -> None:
        self._subjects.pop(sid, None)
        self._handlers.pop(sid, None)
        if self.connected:
            self._write(b"UNSUB %b\r\n" % sid)

    # ------------------------------------------------------------------ writing
    def publish(
        self, subject: bytes, payload: bytes, reply: bytes = b"", headers: bytes = b""
    ) -> None:
        """Queue one message; everything queued in this loop turn goes out in one write."""
        if len(payload) + len(headers) > self._max_payload:
            raise PayloadTooLarge(
                f"{len(payload) + len(headers)} bytes to {subject!r} exceed the server's "
                f"max_payload of {self._max_payload}"
            )
        if headers:
            size = len(headers)
            command = _HPUB if reply else _HPUB_NO_REPLY
            data = command % (subject, reply, size, size + len(payload), headers, payload)
        else:
            command = _PUB if reply else _PUB_NO_REPLY
            data = command % (subject, reply, len(payload), payload)
        if not self._up:
            raise WireDown()
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def ping_soon(self) -> asyncio.Future[None]:
        """Write a PING; the future resolves when the server answers it, by which time it
        has read everything written before (it fails with WireDown if the connection is
        lost first)."""
        conn = self._conn
        if conn is None or not self.connected:
            raise WireDown()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._write(_PING)
        conn.pongs.append(waiter)
        return waiter

    async def ping(self, within: float) -> None:
        """Round trip: when it returns, the server has read everything written before."""
        waiter = self.ping_soon()
        async with asyncio.timeout(within):
            await waiter

    def _write(self, data: bytes) -> None:
        if not self._up:
            raise WireDown()
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._out:
            return
        out, self._out = self._out, []
        conn = self._conn
        if conn is None:
            return
        try:
            conn.write(out[0] if len(out) == 1 else b"".join(out))
        except WireDown:
            log.debug("dropped %d commands: the nats connection is gone", len(out))


async def _wait(stop: asyncio.Event, seconds: float, *also: asyncio.Future[None]) -> bool:
    """Wait for `stop` or any of `also` for up to `seconds`; whether one of them happened."""
    stopped = asyncio.ensure_future(stop.wait())
    waiters: list[asyncio.Future[Any]] = [stopped, *also]
    try:
        done, _ = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopped
    return bool(done)
