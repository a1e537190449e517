"""Tables, ages and printer columns look like kubectl's."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from arks_cli.printing import (
    age_of,
    columns_for,
    human_age,
    lookup,
    object_table,
    render_table,
)
from arks_common import crds
from arks_common.resources import KIND_INFO


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (5, "5s"),
        (119, "119s"),
        (180, "3m"),
        (200, "3m20s"),
        (25 * 60, "25m"),
        (2 * 3600, "120m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 600, "3h10m"),
        (23 * 3600, "23h"),
        (4 * 86400, "4d"),
        (2 * 86400 + 3 * 3600, "2d3h"),
        (100 * 86400, "100d"),
        (2 * 365 * 86400 + 10 * 86400, "2y10d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_age_matches_kubectl(seconds: int, shown: str) -> None:
    assert human_age(seconds) == shown


def test_age_of_timestamps() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert age_of((now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"), now) == "120m"
    assert age_of("not a time", now) == "<unknown>"
    assert age_of(None, now) == "<unknown>"


def test_columns_are_the_crds_and_wide_adds_priority_one() -> None:
    for kind in KIND_INFO:
        crd_columns = crds.crd_for(kind)["spec"]["versions"][0]["additionalPrinterColumns"]
        narrow = [c.name for c in columns_for(kind, wide=False)]
        wide = [c.name for c in columns_for(kind, wide=True)]
        assert wide == [c["name"] for c in crd_columns]
        assert narrow == [c["name"] for c in crd_columns if c.get("priority", 0) == 0]
    assert "Runtime" in [c.name for c in columns_for("ArksApplication", wide=True)]
    assert "Runtime" not in [c.name for c in columns_for("ArksApplication", wide=False)]


def test_lookup_follows_json_paths() -> None:
    obj = {"spec": {"model": {"name": "m"}, "routes": [{"name": "a"}]}}
    assert lookup(obj, ".spec.model.name") == "m"
    assert lookup(obj, ".spec.routes[0].name") == "a"
    assert lookup(obj, ".spec.routes[3].name") is None
    assert lookup(obj, ".status.phase") is None
    quota = {
        "status": {"quotaStatus": [{"type": "prompt", "used": 3}, {"type": "total", "used": 9}]}
    }
    assert lookup(quota, '.status.quotaStatus[?(@.type=="total")].used') == 9
    assert lookup(quota, ".status.quotaStatus[?(@.type=='prompt')].used") == 3
    assert lookup(quota, '.status.quotaStatus[?(@.type=="response")].used') is None


def test_table_layout() -> None:
    text = render_table(["NAME", "AGE"], [["a", "5s"], ["longer-name", "3m"]])
    assert text.splitlines() == ["NAME          AGE", "a             5s", "longer-name   3m"]


def test_object_table_shows_none_for_missing_values_and_namespace_with_all() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    app = {
        "kind": "ArksApplication",
        "metadata": {
            "name": "app-qwen",
            "namespace": "team-a",
            "creationTimestamp": "2025-12-31T23:59:55Z",
        },
        "spec": {"runtime": "sim", "model": {"name": "qwen-7b"}},
        "status": {"phase": "Running", "replicas": 1, "readyReplicas": 1},
    }
    table = object_table(
        KIND_INFO["ArksApplication"],
        [app],
        wide=True,
        all_namespaces=True,
        qualify=False,
        now=now,
    )
    header, row = table.splitlines()
    columns = columns_for("ArksApplication", wide=True)
    assert re.split(" {3,}", header) == ["NAMESPACE", "NAME", *(c.header for c in columns)]
    shown = dict(zip((c.name for c in columns), row.split()[2:], strict=True))
    assert row.split()[:2] == ["team-a", "app-qwen"]
    assert shown["Phase"] == "Running"
    assert shown["Age"] == "5s"
    assert shown["Ready"] == "1"
    assert shown["Model"] == "qwen-7b"
    assert shown["Runtime"] == "sim"
    assert shown["Driver"] == "<none>"
