"""The embedded brokers start, restart in place and keep their data."""

from __future__ import annotations

import redis

from arks_common.embedded import NatsServer, ValkeyServer


def test_valkey_keeps_counters_across_a_crash(tmp_path) -> None:
    server = ValkeyServer(tmp_path / "v")
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        client.incrby("counter", 41)
        client.incr("counter")
        client.close()
        server.kill()  # no shutdown save: only the fsync-always AOF can bring it back
        server.start()
        client = redis.Redis.from_url(server.url)
        assert client.get("counter") == b"42"
        client.close()
    finally:
        server.stop()
    assert not server.running


def test_nats_restarts_on_the_same_port(tmp_path) -> None:
    server = NatsServer(tmp_path / "n")
    server.start()
    port = server.port
    try:
        server.restart()
        assert server.running
        assert server.port == port
    finally:
        server.stop()
