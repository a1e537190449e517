"""Credentials on the accountant's connections, against servers that require them: the
hot-path wire with user/password (from the URL or the settings), an inbox prefix its user
is limited to, and a refusal that names the setting to fix; Valkey with a password."""

from __future__ import annotations

import asyncio
import logging

import pytest
from pydantic import SecretStr

from arks_accountant.consuming import Puller, ensure_consumer, settle
from arks_accountant.pricing import UNPRICED, billing_record, charge
from arks_accountant.publishing import Bill, BillingPublisher, JetStreamPublisher
from arks_accountant.service import make_lifespan
from arks_accountant.testing import (
    connected_wire,
    make_settings,
    publish_usage,
    put_spec,
    running_accountant,
    used,
    wait_for,
)
from arks_accountant.wire import NotAuthorized, Wire
from arks_common import access, subjects, valkey
from arks_common.embedded import NatsServer
from arks_common.errors import PermanentError
from arks_common.messaging import Ack, ConsumerSpec
from arks_common.runtime import run_until_stopped
from arks_common.settings import RedisSettings
from arks_common.testing.builders import make_quota_spec, make_usage_event

USER = access.ACCOUNTANT
PREFIX = access.inbox_prefix(USER)


def url_as(server: NatsServer, user: str, password: str) -> str:
    return f"nats://{user}:{password}@{server.host}:{server.port}"


def _spec() -> ConsumerSpec:
    return ConsumerSpec(
        stream=subjects.USAGE_STREAM,
        durable=subjects.ACCOUNTANT_CONSUMER,
        filter_subject=subjects.USAGE_ALL,
        batch=10,
        fetch_timeout=1.0,
    )


async def test_user_and_password_from_the_url(secured_nats_server, credentials):
    url = url_as(secured_nats_server, access.ADMIN, credentials.nats[access.ADMIN])
    async with connected_wire(url) as wire:
        await wire.ping(5)


async def test_the_settings_credentials_and_inbox_prefix_carry_a_pull_and_a_publish(
    secured_nats_server, admin_bus, credentials
):
    """The accountant's user (`access.ACCOUNTANT`) may subscribe only under its inbox
    prefix: its pulls, acks and billing publishes work when the wire is given the user,
    password and prefix."""
    usage = [make_usage_event(prompt_tokens=i) for i in range(1, 6)]
    await publish_usage(admin_bus, *usage)
    spec = _spec()
    await ensure_consumer(admin_bus, spec)
    settings = credentials.nats_settings(USER, secured_nats_server.url)
    assert settings.inbox_prefix == PREFIX
    wire = Wire(
        settings.servers,
        name="t",
        user=settings.user,
        password=credentials.nats[USER],
        inbox_prefix=settings.inbox_prefix,
    )
    await wire.connect(10)
    try:
        inbox = wire.new_inbox()
        assert inbox.startswith(f"{PREFIX}.")
        with Puller(wire, spec, inbox) as puller:
            batch = await puller.fetch()
        assert sorted(d.data for d in batch) == sorted(e.to_bytes() for e in usage)
        assert await settle(wire, admin_bus, spec, batch, [Ack()] * len(batch))
        await wire.ping(5)
        info = await admin_bus.js.consumer_info(spec.stream, spec.durable)
        assert info.ack_floor.stream_seq == len(usage)

        record = billing_record(usage[0], "lifetime", charge(usage[0], UNPRICED))
        publisher = BillingPublisher(JetStreamPublisher(wire, timeout=5))
        assert await publisher.publish([Bill.of(record)]) == [True]
    finally:
        await wire.close()


async def test_a_subject_outside_the_users_permissions_is_reported_as_an_error(
    secured_nats_server, credentials, caplog
):
    # the default prefix `_INBOX` is not the accountant's own
    wire = Wire([secured_nats_server.url], name="t", user=USER, password=credentials.nats[USER])
    await wire.connect(10)
    try:
        with caplog.at_level(logging.ERROR, logger="arks_accountant.wire"):
            wire.subscribe(f"{wire.new_inbox()}.*", lambda *_: None)
            await wire.ping(5)  # the server answers the SUB before this PING
        assert wire.connected
    finally:
        await wire.close()
    assert any("Permissions Violation" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("in_url", "user", "password", "named"),
    [
        (False, USER, "wrong", "(ARKS_NATS__USER) and ARKS_NATS__PASSWORD"),
        (True, USER, "wrong", "in ARKS_NATS__URL"),
        (False, None, None, "set ARKS_NATS__USER and ARKS_NATS__PASSWORD"),
    ],
)
async def test_refused_credentials_stop_the_connection_with_the_setting_named(
    secured_nats_server, in_url, user, password, named
):
    server = secured_nats_server
    if in_url:
        wire = Wire([url_as(server, user, password)], name="t", connect_timeout=5)
    else:
        wire = Wire([server.url], name="t", user=user, password=password, connect_timeout=5)
    try:
        with pytest.raises(NotAuthorized) as refused:
            await wire.connect(60)  # refused at once, not retried until the deadline
    finally:
        await wire.close()
    assert "Authorization Violation" in refused.value.message
    assert named in refused.value.message
    assert "wrong" not in refused.value.message  # never the secret itself


async def test_the_accountant_applies_usage_as_its_valkey_user(
    bus, nats_server, secured_valkey_server, credentials
):
    await put_spec(bus, make_quota_spec())
    usage = [make_usage_event(prompt_tokens=3) for _ in range(5)]
    redis_settings = credentials.redis_settings(USER, secured_valkey_server.url)
    settings = make_settings(nats_server.url, secured_valkey_server.url, redis=redis_settings)
    async with running_accountant(settings) as acct:
        await publish_usage(bus, *usage)
        await wait_for(
            lambda: acct.metric("arks_accountant_events_total", result="applied") == len(usage),
            what="usage applied",
        )
    client = valkey.client(redis_settings)
    try:
        assert (await used(client, "default", "basic-quota"))["prompt"] == 15
    finally:
        await client.aclose()


async def test_a_wrong_valkey_password_stops_the_accountant_with_the_setting_named(
    nats_server, secured_valkey_server
):
    redis_settings = RedisSettings(
        url=secured_valkey_server.url, username=USER, password=SecretStr("not-it")
    )
    settings = make_settings(nats_server.url, secured_valkey_server.url, redis=redis_settings)
    with pytest.raises(BaseException) as stopped:
        await run_until_stopped(
            "arks-accountant", settings, make_lifespan(settings), asyncio.Event()
        )
    group = stopped.value
    [error] = group.exceptions if isinstance(group, BaseExceptionGroup) else [group]
    assert isinstance(error, PermanentError)
    assert "ARKS_REDIS__PASSWORD" in error.message
    assert "not-it" not in error.message
