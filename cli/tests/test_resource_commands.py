"""apply / get / describe / delete / token create against a real nats-server."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
import yaml

from arks_common import events, messaging, subjects
from arks_common.resources import load_resources
from arks_common.store import ResourceStore
from cli.tests.conftest import QUICKSTART, Arks

QUICKSTART_NAMES = [
    "arksmodel.arks.ai/qwen-7b",
    "arksapplication.arks.ai/app-qwen",
    "arksendpoint.arks.ai/qwen-7b",
    "arksquota.arks.ai/basic-quota",
    "arkstoken.arks.ai/example-token",
]


def test_local_quickstart_loads_and_keeps_upstream_values() -> None:
    resources = {r.kind: r for r in load_resources(QUICKSTART.read_text())}
    assert set(resources) == {
        "ArksModel",
        "ArksApplication",
        "ArksEndpoint",
        "ArksQuota",
        "ArksToken",
    }
    model = resources["ArksModel"]
    assert model.name == "qwen-7b"
    assert model.spec.source is None
    assert model.spec.storage is not None
    assert model.spec.storage.local_path
    app = resources["ArksApplication"]
    assert (app.name, app.spec.runtime, app.spec.replicas) == ("app-qwen", "sim", 1)
    endpoint = resources["ArksEndpoint"]
    assert endpoint.name == "qwen-7b"
    assert endpoint.spec.default_weight == 5
    assert [m.path.value for m in endpoint.spec.match_configs if m.path] == [
        "/v1/completions",
        "/v1/chat/completions",
    ]
    quota = resources["ArksQuota"]
    assert {q.type: q.value for q in quota.spec.quotas} == {
        "prompt": 100000,
        "response": 500000,
        "total": 600000,
    }
    assert quota.spec.price_for("qwen-7b") is not None
    token = resources["ArksToken"]
    assert token.name == "example-token"
    assert token.spec.token.get_secret_value() == "sk-test123456"
    grant = token.grant_for("qwen-7b")
    assert grant is not None
    assert {r.type: r.value for r in grant.rate_limits} == {
        "rpm": 5,
        "tpm": 40000,
        "rpd": 100,
        "tpd": 1000000,
    }
    assert grant.quota is not None
    assert grant.quota.name == "basic-quota"


async def test_apply_creates_then_reports_unchanged_and_configured(
    arks: Arks, bus: messaging.Bus, tmp_path: Path
) -> None:
    first = await arks("apply", "-f", str(QUICKSTART))
    assert first.code == 0, first.err
    assert first.out.splitlines() == [f"{n} created" for n in QUICKSTART_NAMES]

    again = await arks("apply", "-f", str(QUICKSTART))
    assert again.out.splitlines() == [f"{n} unchanged" for n in QUICKSTART_NAMES]

    changed = QUICKSTART.read_text().replace("defaultWeight: 5", "defaultWeight: 7")
    edited = tmp_path / "edited.yaml"
    edited.write_text(changed)
    third = await arks("apply", "-f", str(edited))
    assert "arksendpoint.arks.ai/qwen-7b configured" in third.out.splitlines()
    assert third.out.count("unchanged") == 4
    stored = await ResourceStore(bus).get("ArksEndpoint", "default", "qwen-7b")
    assert stored is not None
    assert stored["spec"]["defaultWeight"] == 7
    assert stored["metadata"]["generation"] == 2


async def test_apply_from_stdin_with_namespace(
    arks: Arks, bus: messaging.Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = {
        "apiVersion": "arks.ai/v1",
        "kind": "ArksQuota",
        "metadata": {"name": "team-quota"},
        "spec": {"quotas": [{"type": "total", "value": 10}]},
    }
    monkeypatch.setattr("sys.stdin", io.StringIO(yaml.safe_dump(doc)))
    result = await arks("apply", "-n", "team-a", "-f", "-")
    assert result.code == 0, result.err
    assert result.out.strip() == "arksquota.arks.ai/team-quota created"
    assert await ResourceStore(bus).get("ArksQuota", "team-a", "team-quota") is not None


async def test_invalid_file_is_refused_whole_naming_the_field(
    arks: Arks, bus: messaging.Bus, tmp_path: Path
) -> None:
    text = QUICKSTART.read_text().replace("type: rpm", "type: rph")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    result = await arks("apply", "-f", str(bad))
    assert result.code == 1
    assert "Traceback" not in result.err
    assert "document 5 (ArksToken example-token): spec.qos[0].rateLimits[0].type" in result.err
    assert result.err.startswith("error: ")
    assert result.out == ""
    store = ResourceStore(bus)
    for kind in ("ArksModel", "ArksApplication", "ArksEndpoint", "ArksQuota", "ArksToken"):
        assert await store.list(kind) == [], f"{kind} was applied from an invalid file"


async def test_namespace_flag_must_match_the_objects(arks: Arks) -> None:
    result = await arks("apply", "-n", "other", "-f", str(QUICKSTART))
    assert result.code == 1
    assert "does not match the namespace 'other'" in result.err


async def test_get_tables_short_names_and_wide(arks: Arks, bus: messaging.Bus) -> None:
    await arks("apply", "-f", str(QUICKSTART))
    await ResourceStore(bus).update_status(
        "ArksApplication",
        "default",
        "app-qwen",
        lambda s: {**s, "phase": "Running", "replicas": 1, "readyReplicas": 1},
    )
    for name in ("arkapp", "arksapplication", "arksapplications", "ArksApplication"):
        result = await arks("get", name)
        assert result.code == 0, result.err
        header, row = result.out.splitlines()
        assert header.split() == ["NAME", "PHASE", "AGE", "REPLICAS", "READY"]
        fields = row.split()
        assert fields[0] == "app-qwen"
        assert fields[1] == "Running"
        assert fields[2].endswith("s")
        assert fields[3:] == ["1", "1"]
    wide = await arks("get", "arkapp", "-o", "wide")
    assert wide.out.splitlines()[0].split()[:8] == [
        "NAME",
        "PHASE",
        "AGE",
        "REPLICAS",
        "READY",
        "MODEL",
        "RUNTIME",
        "DRIVER",
    ]
    assert "qwen-7b" in wide.out.splitlines()[1]
    assert "sim" in wide.out.splitlines()[1].split()

    endpoints = await arks("get", "aep")
    assert endpoints.out.splitlines()[0].split()[:4] == ["NAME", "AGE", "DEFAULT", "WEIGHT"]
    assert endpoints.out.splitlines()[1].split()[0] == "qwen-7b"
    assert endpoints.out.splitlines()[1].split()[2] == "5"

    several = await arks("get", "am,aq,atk")
    names = [line.split()[0] for line in several.out.splitlines() if line and "NAME" not in line]
    assert names == [
        "arksmodel.arks.ai/qwen-7b",
        "arksquota.arks.ai/basic-quota",
        "arkstoken.arks.ai/example-token",
    ]
    every = await arks("get", "aq", "-A")
    assert every.out.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert every.out.splitlines()[1].split()[:2] == ["default", "basic-quota"]


async def test_get_output_formats(arks: Arks) -> None:
    await arks("apply", "-f", str(QUICKSTART))
    one = await arks("get", "arksapplication", "app-qwen", "-o", "yaml")
    obj = yaml.safe_load(one.out)
    assert obj["kind"] == "ArksApplication"
    assert obj["metadata"]["name"] == "app-qwen"
    assert obj["spec"]["runtime"] == "sim"
    listed = json.loads((await arks("get", "am", "-o", "json")).out)
    assert listed["kind"] == "List"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["qwen-7b"]
    slash = json.loads((await arks("get", "aep/qwen-7b", "-o", "json")).out)
    assert slash["spec"]["defaultWeight"] == 5
    names = await arks("get", "arkapp,aep", "-o", "name")
    assert names.out.splitlines() == [
        "arksapplication.arks.ai/app-qwen",
        "arksendpoint.arks.ai/qwen-7b",
    ]


async def test_get_missing_and_unknown(arks: Arks) -> None:
    missing = await arks("get", "arkapp", "nope")
    assert missing.code == 1
    assert 'arksapplications.arks.ai "nope" not found' in missing.err
    unknown = await arks("get", "pods")
    assert unknown.code == 1
    assert unknown.err.startswith("error: 'pods' is not an arks.ai/v1 resource")
    empty = await arks("get", "aq", "-n", "nobody")
    assert empty.code == 0
    assert empty.out == ""
    assert empty.err.strip() == "No resources found in nobody namespace."


async def test_describe_shows_spec_conditions_and_events(arks: Arks, bus: messaging.Bus) -> None:
    await arks("apply", "-f", str(QUICKSTART))
    store = ResourceStore(bus)
    condition = {
        "type": "Ready",
        "status": "False",
        "reason": "ModelNotExist",
        "message": "ArksModel default/qwen-7b not found",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    await store.update_status(
        "ArksApplication",
        "default",
        "app-qwen",
        lambda s: {**s, "phase": "Loading", "conditions": [condition]},
    )
    for phase, reason in (("Checking", "Precheck"), ("Loading", "ModelNotExist")):
        event = events.ResourceStatusChanged(
            id=f"app-qwen-{phase}",
            kind="ArksApplication",
            namespace="default",
            name="app-qwen",
            phase=phase,
            reason=reason,
            message=f"now {phase}",
            event_type="Warning" if phase == "Loading" else "Normal",
        )
        await bus.publish(
            subjects.resource_status_subject("ArksApplication", "default", "app-qwen"), event
        )
    # Another object's events must not show up.
    other = events.ResourceStatusChanged(
        id="other", kind="ArksEndpoint", namespace="default", name="qwen-7b", reason="Other"
    )
    await bus.publish(subjects.resource_status_subject("ArksEndpoint", "default", "qwen-7b"), other)

    result = await arks("describe", "arkapp", "app-qwen")
    assert result.code == 0, result.err
    text = result.out
    assert text.startswith("Name:         app-qwen\nNamespace:    default\n")
    assert "Runtime:" in text
    assert "sim" in text
    assert "Phase:  Loading" in text
    conditions = text[text.index("Conditions:") : text.index("Events:")]
    assert "ModelNotExist" in conditions
    assert "ArksModel default/qwen-7b not found" in conditions
    events_part = text[text.index("Events:") :]
    lines = events_part.splitlines()[2:]
    assert [line.split()[:2] for line in lines] == [
        ["Normal", "Precheck"],
        ["Warning", "ModelNotExist"],
    ]
    assert "Other" not in events_part


async def test_describe_never_shows_a_token(arks: Arks) -> None:
    await arks("apply", "-f", str(QUICKSTART))
    result = await arks("describe", "atk", "example-token")
    assert result.code == 0
    assert "sk-test123456" not in result.out
    digest = hashlib.sha256(b"sk-test123456").hexdigest()
    assert digest[:12] in result.out


async def test_delete_by_name_and_from_file(arks: Arks, bus: messaging.Bus) -> None:
    await arks("apply", "-f", str(QUICKSTART))
    store = ResourceStore(bus)
    gone = await arks("delete", "arkapp", "app-qwen")
    assert gone.code == 0
    assert gone.out.strip() == 'arksapplication.arks.ai "app-qwen" deleted'
    assert await store.get("ArksApplication", "default", "app-qwen") is None
    again = await arks("delete", "arkapp", "app-qwen")
    assert again.code == 1
    assert 'arksapplications.arks.ai "app-qwen" not found' in again.err
    ignored = await arks("delete", "arkapp", "app-qwen", "--ignore-not-found")
    assert ignored.code == 0
    from_file = await arks("delete", "-f", str(QUICKSTART), "--ignore-not-found")
    assert from_file.code == 0
    assert len(from_file.out.splitlines()) == 4
    for kind in ("ArksModel", "ArksEndpoint", "ArksQuota", "ArksToken"):
        assert await store.list(kind) == []


async def test_token_create_prints_a_token_once_whose_hash_is_stored(
    arks: Arks, bus: messaging.Bus
) -> None:
    await arks("apply", "-f", str(QUICKSTART))
    result = await arks(
        "token",
        "create",
        "alice",
        "--endpoint",
        "qwen-7b",
        "--rpm",
        "60",
        "--tpm",
        "1000",
        "--quota",
        "basic-quota",
    )
    assert result.code == 0, result.err
    token = result.out.strip()
    assert token.startswith("sk-")
    assert len(token) > 40
    assert "arkstoken.arks.ai/alice created" in result.err
    stored = await ResourceStore(bus).get("ArksToken", "default", "alice")
    assert stored is not None
    typed = load_resources(yaml.safe_dump(stored))[0]
    assert typed.spec.token_hash() == hashlib.sha256(token.encode()).hexdigest()
    grant = typed.grant_for("qwen-7b")
    assert grant is not None
    assert {r.type: r.value for r in grant.rate_limits} == {"rpm": 60, "tpm": 1000}
    assert grant.quota is not None
    assert grant.quota.name == "basic-quota"
    # Stored, and shown, as its digest only: never the secret again.
    assert "token" not in stored["spec"]
    for name in ("alice", "example-token"):  # created here / applied from upstream YAML
        shown = await arks("get", "atk", name, "-o", "yaml")
        assert shown.code == 0, shown.err
        assert "tokenSha256" in shown.out
        assert token not in shown.out
        assert "sk-test123456" not in shown.out
    # Each token is new, and a name is not reused.
    duplicate = await arks("token", "create", "alice", "--endpoint", "qwen-7b")
    assert duplicate.code == 1
    assert "already exists" in duplicate.err
    other = await arks("token", "create", "bob", "--endpoint", "missing-model")
    assert other.code == 0
    assert other.out.strip() != token
    assert "warning: ArksEndpoint default/missing-model does not exist" in other.err
    shown = await arks("describe", "atk", "alice")
    assert token not in shown.out


async def test_every_example_manifest_applies(arks: Arks) -> None:
    examples = sorted((QUICKSTART.parents[1]).rglob("*.yaml"))
    assert QUICKSTART in examples
    assert len(examples) >= 2
    for path in examples:
        documents = load_resources(path.read_text())
        result = await arks("apply", "-f", str(path))
        assert result.code == 0, (path, result.err)
        assert result.out.count(" created") == len(documents), path
        # The examples share names (one quickstart per platform): each starts afresh.
        deleted = await arks("delete", "-f", str(path))
        assert deleted.code == 0, (path, deleted.err)
