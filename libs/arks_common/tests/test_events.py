"""Message contracts: stable ids, headers, round trips, tolerant decoding."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from arks_common import events
from arks_common.errors import PermanentError
from arks_common.testing.builders import make_quota_spec, make_token_grant, make_usage_event


def test_event_headers_carry_type_version_and_msg_id() -> None:
    event = make_usage_event(id="req-1")
    headers = event.headers()
    assert headers == {
        events.TYPE_HEADER: "UsageRecorded",
        events.VERSION_HEADER: "1",
        events.MSG_ID_HEADER: "req-1",
    }
    assert event.request_id == "req-1"
    assert event.total_tokens == 30


@pytest.mark.parametrize(
    "message",
    [
        make_usage_event(),
        make_quota_spec(),
        make_token_grant(),
        events.BillingRecord(
            id=events.BillingRecord.id_for("r"),
            request_id="r",
            namespace="default",
            token_name="t",
            endpoint="e",
            amount_total=Decimal("0.000000123456789"),
        ),
        events.EngineLoadSnapshot(
            id="s",
            namespace="default",
            application="app",
            replicas=[events.ReplicaLoad(replica="0", url="http://127.0.0.1:1", running=3)],
        ),
    ],
)
def test_round_trip_through_bytes_and_registry(message: events.Message) -> None:
    data = message.to_bytes()
    assert type(message).from_bytes(data) == message
    assert events.decode(message.headers(), data) == message


def test_money_travels_as_exact_decimal_strings() -> None:
    spec = make_quota_spec()
    wire = orjson.loads(spec.to_bytes())
    assert wire["prices"][0]["prompt"] == "0.50"
    record = events.BillingRecord(
        id="b",
        request_id="r",
        namespace="n",
        token_name="t",
        endpoint="e",
        amount_total=Decimal("1E-12"),
    )
    assert orjson.loads(record.to_bytes())["amount_total"] == "0.000000000001"


def test_unknown_fields_from_newer_producers_are_ignored() -> None:
    data = orjson.dumps({**orjson.loads(make_usage_event().to_bytes()), "future_field": 1})
    assert events.decode_as(events.UsageRecorded, data).namespace == "default"


def test_bad_messages_are_permanent_errors() -> None:
    with pytest.raises(PermanentError, match="unknown message type"):
        events.decode({events.TYPE_HEADER: "nope"}, b"{}")
    with pytest.raises(PermanentError, match="invalid UsageRecorded"):
        events.decode_as(events.UsageRecorded, b'{"id": ""}')


def test_grant_and_price_lookup() -> None:
    grant = make_token_grant()
    assert grant.grant_for("qwen-7b") is not None
    assert grant.grant_for("other") is None
    spec = make_quota_spec()
    price = spec.price_for("qwen-7b")
    assert price is not None
    assert price.completion == Decimal("1.50")
