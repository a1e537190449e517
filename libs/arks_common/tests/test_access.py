"""The NATS users of `arks_common.access` against a real nats-server: each can do what
its service needs and nothing it must not."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import nats.errors
import nats.js.errors
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from arks_common import access, subjects
from arks_common.embedded import NatsServer
from arks_common.errors import PermanentError, RetryableError
from arks_common.messaging import Bus
from arks_common.testing.builders import make_usage_event

DENIED = (nats.errors.TimeoutError, nats.errors.NoRespondersError, TimeoutError)
"""A denied JetStream request is dropped by the server: the client waits in vain."""


@contextlib.asynccontextmanager
async def connected(
    server: NatsServer, credentials: access.Credentials, user: str
) -> AsyncIterator[Bus]:
    settings = credentials.nats_settings(user, server.url, connect_deadline=10, request_timeout=0.5)
    bus = await Bus.connect(settings, name=f"test-{user}")
    try:
        yield bus
    finally:
        await bus.close(drain_timeout=1.0)


def denied_in(caplog: pytest.LogCaptureFixture, user: str, subject: str) -> bool:
    # nats-server lower-cases the subject it names in a permissions violation.
    return any(
        f"NATS denied user {user!r}" in r.getMessage() and subject.lower() in r.getMessage()
        for r in caplog.records
    )


async def until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(5.0):
        while not check():  # noqa: ASYNC110 - the condition is another client's doing
            await asyncio.sleep(0.02)


# ----------------------------------------------------------------------------- credentials


async def test_wrong_password_stops_with_the_settings_to_fix(
    secured_nats_server: NatsServer, credentials: access.Credentials
) -> None:
    settings = credentials.nats_settings(access.ROUTER, secured_nats_server.url)
    wrong = settings.model_copy(update={"password": access.SecretStr("not-the-password")})
    with pytest.raises(PermanentError) as raised:
        await Bus.connect(wrong, name="test")
    assert "refused user 'router'" in raised.value.message
    assert "ARKS_NATS__USER / ARKS_NATS__PASSWORD" in raised.value.message
    assert "not-the-password" not in raised.value.message


async def test_no_user_on_a_secured_server_says_which_settings_to_set(
    secured_nats_server: NatsServer,
) -> None:
    from arks_common.settings import NatsSettings

    with pytest.raises(PermanentError, match="set ARKS_NATS__USER / ARKS_NATS__PASSWORD"):
        await Bus.connect(NatsSettings(url=secured_nats_server.url), name="test")


# ----------------------------------------------------------------------------- router


async def test_router_reads_the_data_plane_buckets_and_publishes_usage(
    secured_nats_server: NatsServer, credentials: access.Credentials, admin_bus: Bus
) -> None:
    tokens = await admin_bus.kv(subjects.TOKENS_BUCKET)
    await tokens.put("abc", b"grant")
    async with connected(secured_nats_server, credentials, access.ROUTER) as bus:
        await bus.ensure_topology(access.ROLES[access.ROUTER])  # owns nothing: no-op
        for bucket in (
            subjects.ROUTES_BUCKET,
            subjects.TOKENS_BUCKET,
            subjects.QUOTAS_BUCKET,
            subjects.QUOTA_STATE_BUCKET,
        ):
            stop = asyncio.Event()
            updates = bus.watch(bucket, stop=stop)
            snapshot = await anext(updates)
            stop.set()
            await updates.aclose()
            if bucket == subjects.TOKENS_BUCKET:
                assert snapshot.entries == {"abc": b"grant"}  # type: ignore[union-attr]
        event = make_usage_event()
        ack = await bus.publish(subjects.usage_subject("default", "qwen"), event)
        assert ack.stream == subjects.USAGE_STREAM
        loads: list[bytes] = []

        async def on_load(msg: nats.aio.msg.Msg) -> None:
            loads.append(msg.data)

        sub = await bus.nc.subscribe(subjects.LOAD_ALL, cb=on_load)
        await bus.nc.flush()
        await admin_bus.nc.publish(subjects.load_subject("default", "app"), b"load")
        await until(lambda: loads == [b"load"])
        await sub.unsubscribe()


async def test_router_cannot_write_tokens_read_resources_or_touch_streams(
    secured_nats_server: NatsServer,
    credentials: access.Credentials,
    admin_bus: Bus,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)
    async with connected(secured_nats_server, credentials, access.ROUTER) as bus:
        tokens = await bus.kv(subjects.TOKENS_BUCKET)
        with pytest.raises(DENIED):
            await tokens.put("0" * 64, b"forged grant")
        await until(lambda: denied_in(caplog, "router", "$KV.arks-tokens."))
        with pytest.raises(DENIED):
            await bus.kv(subjects.RESOURCES_BUCKET)
        with pytest.raises(DENIED):
            await bus.js.delete_stream(subjects.USAGE_STREAM)
        with pytest.raises(DENIED):
            await bus.js.purge_stream(access.kv_stream(subjects.TOKENS_BUCKET))
        with pytest.raises(DENIED):
            await bus.js.add_stream(name="ROGUE", subjects=["rogue.>"])
        with pytest.raises(DENIED):
            await bus.ensure_topology()  # everything: not the router's to create
    # Nothing of that reached the server.
    admin_tokens = await admin_bus.kv(subjects.TOKENS_BUCKET)
    with pytest.raises(nats.js.errors.KeyNotFoundError):
        await admin_tokens.get("0" * 64)
    assert (await admin_bus.js.stream_info(subjects.USAGE_STREAM)).config.name


async def test_no_user_reads_another_users_inbox(
    secured_nats_server: NatsServer,
    credentials: access.Credentials,
    admin_bus: Bus,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)
    received: list[bytes] = []

    async def on_message(msg: nats.aio.msg.Msg) -> None:
        received.append(msg.data)

    async with connected(secured_nats_server, credentials, access.ROUTER) as bus:
        await bus.nc.subscribe(f"{access.inbox_prefix(access.RECONCILER)}.>", cb=on_message)
        await bus.nc.subscribe("_INBOX.>", cb=on_message)
        await until(lambda: denied_in(caplog, "router", "_INBOX_reconciler"))
        await admin_bus.nc.publish(f"{access.inbox_prefix(access.RECONCILER)}.x", b"reply")
        await admin_bus.nc.publish("_INBOX.x", b"reply")
        await admin_bus.nc.flush()
        await bus.nc.flush()
    assert received == []


# ----------------------------------------------------------------------------- billing


async def test_billing_user_reads_billing_records_and_nothing_else(
    secured_nats_server: NatsServer,
    credentials: access.Credentials,
    admin_bus: Bus,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)
    await admin_bus.js.publish(subjects.billing_subject("ns", quota="q", token_name="t"), b"r1")
    async with connected(secured_nats_server, credentials, access.BILLING) as bus:
        config = ConsumerConfig(durable_name="my-billing", ack_policy=AckPolicy.EXPLICIT)
        sub = await bus.js.pull_subscribe(
            subjects.BILLING_ALL,
            durable="my-billing",
            stream=subjects.BILLING_STREAM,
            config=config,
        )
        (msg,) = await sub.fetch(1, timeout=2)
        assert msg.data == b"r1"
        await msg.ack_sync(timeout=2)
        with pytest.raises(RetryableError):
            await bus.publish(subjects.usage_subject("ns", "e"), make_usage_event())
        assert denied_in(caplog, "billing", "arks.usage.ns.e")
        with pytest.raises(DENIED):
            await bus.js.publish(subjects.billing_subject("ns", quota="q", token_name="t"), b"x")
        with pytest.raises(DENIED):
            await bus.js.stream_info(subjects.USAGE_STREAM)
        with pytest.raises(DENIED):
            await bus.js.delete_stream(subjects.BILLING_STREAM)
    info = await admin_bus.js.stream_info(subjects.BILLING_STREAM)
    assert info.state.messages == 1


# ----------------------------------------------------------------------------- ownership


async def test_each_owner_creates_its_topology_and_only_its_own(
    secured_nats_server: NatsServer, credentials: access.Credentials
) -> None:
    """Services start in any order on an empty server; each ensures what it owns."""
    for user in (access.ROUTER, access.MODEL_CACHE, access.ACCOUNTANT, access.RECONCILER):
        async with connected(secured_nats_server, credentials, user) as bus:
            await bus.ensure_topology(access.ROLES[user])
    async with connected(secured_nats_server, credentials, access.ADMIN) as admin:
        streams = {s.config.name for s in await admin.js.streams_info()}
    assert streams == {
        subjects.USAGE_STREAM,
        subjects.BILLING_STREAM,
        subjects.MODEL_JOBS_STREAM,
        subjects.MODEL_EVENTS_STREAM,
        subjects.RESOURCE_EVENTS_STREAM,
        subjects.DLQ_STREAM,
        *(access.kv_stream(b) for r in access.ROLES.values() for b in r.buckets),
    }


def test_only_the_admin_may_delete_or_purge_and_every_user_has_its_own_inbox() -> None:
    for role in access.ROLES.values():
        if role.admin:
            continue
        for subject in role.publish:
            assert ".DELETE." not in subject or subject.startswith(
                f"{access.JS_API}.CONSUMER.DELETE."
            ), subject
            assert "PURGE" not in subject, subject
            assert "MSG.DELETE" not in subject, subject
            assert not subject.startswith(("_INBOX", ">")), subject
        inboxes = [s for s in role.subscribe if s.startswith("_INBOX")]
        assert inboxes == [f"{access.inbox_prefix(role.user)}.>"]


def test_only_the_reconciler_writes_routes_tokens_and_quotas() -> None:
    for bucket in (subjects.ROUTES_BUCKET, subjects.TOKENS_BUCKET, subjects.QUOTAS_BUCKET):
        writers = {
            role.user
            for role in access.ROLES.values()
            if access.kv_subject(bucket) in role.publish or role.admin
        }
        assert writers == {access.RECONCILER, access.ADMIN}, bucket


async def test_router_publishing_before_the_accountant_made_arks_usage_is_retryable(
    secured_nats_server: NatsServer,
    credentials: access.Credentials,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No stream yet: the publish fails as retryable (the router spools it), not denied."""
    caplog.set_level(logging.ERROR)
    async with connected(secured_nats_server, credentials, access.ROUTER) as bus:
        with pytest.raises(RetryableError):
            await bus.publish(subjects.usage_subject("ns", "e"), make_usage_event())
    assert not denied_in(caplog, "router", "arks.usage")
    async with connected(secured_nats_server, credentials, access.ACCOUNTANT) as bus:
        await bus.ensure_own_topology(access.ACCOUNTANT)
    async with connected(secured_nats_server, credentials, access.ROUTER) as bus:
        ack = await bus.publish(subjects.usage_subject("ns", "e"), make_usage_event())
    assert ack.stream == subjects.USAGE_STREAM
