"""The accountant's key layout agrees with arks_common.ledger and round-trips."""

from __future__ import annotations

from arks_accountant import keys
from arks_accountant.recording import marker_version
from arks_accountant.settling import Marker
from arks_common import ledger


def test_counter_templates_build_the_ledger_keys() -> None:
    prefix = keys.counter_prefix("team-a", "gold.tier")
    for kind, used_suffix, reserved_suffix in zip(
        keys.KINDS, keys.USED_SUFFIXES, keys.RESERVED_SUFFIXES, strict=True
    ):
        assert prefix + "d2026-01-02" + used_suffix == ledger.used_key(
            "team-a", "gold.tier", "d2026-01-02", kind
        )
        assert prefix + "m2026-01" + reserved_suffix == ledger.reserved_key(
            "team-a", "gold.tier", "m2026-01", kind
        )


def test_accounts_round_trip_through_their_keys() -> None:
    for account in (
        keys.Account("team-a", "gold.tier"),
        keys.Account("team-a", None, "tok-1"),
        keys.Account("default", "token"),
    ):
        assert keys.Account.from_ledger_key(account.ledger_key) == account
        assert keys.Account.from_hash_key(account.hash_key) == account
    assert keys.Account.from_hash_key("arks:acct:nonsense") is None


def test_quota_and_token_accounts_never_collide() -> None:
    quota = keys.Account("ns", "x")
    token = keys.Account("ns", None, "x")
    assert quota.ledger_key != token.ledger_key
    assert quota.hash_key != token.hash_key
    assert quota.done_key("r1") == ledger.applied_key("ns", "x", "r1")
    assert quota.done_key("r1") != token.done_key("r1")


def test_key_prefixes_build_the_per_request_keys() -> None:
    for account in (keys.Account("team-a", "gold.tier"), keys.Account("team-a", None, "tok-1")):
        assert account.done_prefix + "req-1" == account.done_key("req-1")
    quota = keys.Account("team-a", "gold.tier")
    assert quota.reservation_prefix + "req-1" == ledger.reservation_key(
        "team-a", "gold.tier", "req-1"
    )
    assert keys.Account("team-a", None, "tok-1").reservation_prefix == ""


def test_marker_versions_read_as_markers_parse() -> None:
    for raw in ("lifetime|v1|120", "d2026-01-02||0", "m2026-01|a|b|7", "odd", "x|y", ""):
        assert marker_version(raw) == Marker.parse(raw).price_version
