"""The hot-path NATS connection against a real nats-server: framing, pings, reconnects,
authentication and TLS; and the delivery metadata read from ack subjects."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest

from arks_accountant.deliveries import Delivery
from arks_accountant.publishing import JetStreamPublisher
from arks_accountant.testing import connected_wire, wait_for
from arks_accountant.wire import PayloadTooLarge, Server, Wire, WireDown
from arks_common.embedded import NatsServer
from arks_common.errors import PermanentError

Received = list[tuple[bytes, bytes, bytes, bytes]]


class Outgoing(NamedTuple):
    subject: bytes
    headers: bytes
    body: bytes


def collect(into: Received):
    def handler(subject: bytes, reply: bytes, headers: bytes, payload: bytes) -> None:
        into.append((subject, reply, headers, payload))

    return handler


async def test_messages_of_any_size_arrive_whole_and_in_order(nats_server):
    got: Received = []
    async with connected_wire(nats_server.url) as wire:
        wire.subscribe("t.>", collect(got))
        await wire.ping(5)  # the subscription is in place
        big = bytes(range(256)) * 1000  # spans many socket reads
        headers = b"NATS/1.0\r\nKey: value\r\n\r\n"
        for i in range(200):
            wire.publish(b"t.%d" % i, b"%d:" % i + (big if i % 50 == 0 else b"x" * i))
        wire.publish(b"t.h", b"with headers", b"t.reply", headers)
        wire.publish(b"t.e", b"")
        await wait_for(lambda: len(got) == 202, what="every message")
    for i in range(200):
        subject, reply, hdrs, payload = got[i]
        assert subject == b"t.%d" % i
        assert (reply, hdrs) == (b"", b"")
        assert payload == b"%d:" % i + (big if i % 50 == 0 else b"x" * i)
    assert got[200] == (b"t.h", b"t.reply", headers, b"with headers")
    assert got[201] == (b"t.e", b"", b"", b"")


async def test_unsubscribed_messages_stop(nats_server):
    got: Received = []
    async with connected_wire(nats_server.url) as wire:
        sid = wire.subscribe("u.x", collect(got))
        await wire.ping(5)
        wire.publish(b"u.x", b"1")
        await wait_for(lambda: len(got) == 1, what="first")
        wire.unsubscribe(sid)
        wire.publish(b"u.x", b"2")
        await wire.ping(5)
        await asyncio.sleep(0.05)
    assert [m[3] for m in got] == [b"1"]


async def test_reconnects_and_resubscribes_after_a_restart(nats_server):
    got: Received = []
    lost: list[int] = []
    async with connected_wire(nats_server.url, ping_interval=0.5) as wire:
        wire.on_lost(lambda: lost.append(wire.generation))
        wire.subscribe("r.x", collect(got))
        await wire.ping(5)
        generation = wire.generation
        pending = wire.ping_soon()
        await pending
        nats_server.stop()
        await wait_for(lambda: not wire.connected, what="loss noticed")
        with pytest.raises(WireDown):
            wire.publish(b"r.x", b"while down")
        with pytest.raises(WireDown):
            wire.ping_soon()
        nats_server.start()
        await wait_for(lambda: wire.connected, within=20, what="reconnected")
        assert wire.generation > generation
        assert lost == [generation]
        wire.publish(b"r.x", b"after")
        await wait_for(lambda: len(got) == 1, what="message after the restart")
    assert got[0][3] == b"after"


async def test_a_ping_written_before_a_loss_fails(nats_server):
    async with connected_wire(nats_server.url) as wire:
        nats_server.kill()
        try:
            pending = wire.ping_soon()
            with pytest.raises(WireDown):
                await asyncio.wait_for(pending, 10)
        finally:
            nats_server.start()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls_when_the_server_requires_it(tmp_path):
    cert, key = _self_signed(tmp_path)

    class TlsNats(NatsServer):
        def argv(self) -> list[str]:
            return [*super().argv(), "--tls", "--tlscert", str(cert), "--tlskey", str(key)]

    server = TlsNats(tmp_path / "nats")
    server.start()
    context = ssl.create_default_context(cafile=str(cert))
    got: Received = []
    try:
        for url in (f"tls://127.0.0.1:{server.port}", f"nats://127.0.0.1:{server.port}"):
            wire = Wire([url], name="t", ssl_context=context)
            await wire.connect(5)
            wire.subscribe("s.x", collect(got))
            await wire.ping(5)
            wire.publish(b"s.x", b"secret")
            await wait_for(lambda: len(got) == 1, what="a message over TLS")
            got.clear()
            await wire.close()
    finally:
        server.stop()


def test_server_urls() -> None:
    assert Server.parse("nats://h:4333") == Server("h", 4333, tls=False)
    assert Server.parse("127.0.0.1") == Server("127.0.0.1", 4222, tls=False)
    assert Server.parse("tls://u:p%40ss@h") == Server("h", 4222, True, "u", "p@ss")
    assert Server.parse("nats://tok@h:1").token == "tok"
    with pytest.raises(PermanentError):
        Server.parse("ws://h:1")


def test_delivery_metadata_from_ack_subjects() -> None:
    v1 = Delivery(b"s", b"$JS.ACK.ARKS_USAGE.c.3.41.7.1700000000000000000.9", b"", b"")
    assert (v1.num_delivered, v1.stream_sequence) == (3, 41)
    v2 = Delivery(b"s", b"$JS.ACK.dom.acc.ARKS_USAGE.c.2.99.7.1700000000000000000.0.tok", b"", b"")
    assert (v2.num_delivered, v2.stream_sequence) == (2, 99)
    odd = Delivery(b"s", b"not-an-ack", b"", b"")
    assert (odd.num_delivered, odd.stream_sequence) == (1, 0)


def test_delivery_headers_read_as_nats_py() -> None:
    raw = b"NATS/1.0\r\nArks-Event-Type: A\r\nX: 1\r\nArks-Event-Type:  B \r\n\r\n"
    delivery = Delivery(b"s", b"r", raw, b"")
    assert delivery.header(b"Arks-Event-Type") == "B"  # the last one, stripped
    assert delivery.header(b"Missing") is None
    assert delivery.header_map() == {"Arks-Event-Type": "B", "X": "1"}
    assert Delivery(b"s", b"r", b"", b"").header(b"X") is None


async def test_a_message_over_max_payload_is_refused_without_losing_the_connection(nats_server):
    async with connected_wire(nats_server.url) as wire:
        with pytest.raises(PayloadTooLarge):
            wire.publish(b"p.x", b"x" * (2 << 20))
        publisher = JetStreamPublisher(wire, timeout=5)
        big = Outgoing(b"arks.billing.default.token.t", b"", b"x" * (2 << 20))
        [ack] = await publisher.publish([big])
        assert ack.seq == 0
        assert "max_payload" in ack.description
        await wire.ping(5)
        assert wire.connected
