"""Events, one store for both APIs: `core/v1` Event and `events.k8s.io/v1` Event.

As upstream, events.k8s.io/v1 is another view of the same objects: an event written
through either API is listed, watched and `kubectl describe`d through both. Events are
stored in the core shape; the events.k8s.io view renames the fields:

    involvedObject <-> regarding          message <-> note
    reportingComponent <-> reportingController
    count / firstTimestamp / lastTimestamp / source <-> deprecatedCount /
        deprecatedFirstTimestamp / deprecatedLastTimestamp / deprecatedSource

(`reason`, `type`, `action`, `related`, `eventTime`, `series`, `reportingInstance` are
the same in both). Field selectors name core fields; `regarding.*` and
`reportingController` are accepted and mean their core counterparts.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]
GROUP = "events.k8s.io"
_RENAMED = {
    "involvedObject": "regarding",
    "message": "note",
    "reportingComponent": "reportingController",
    "count": "deprecatedCount",
    "firstTimestamp": "deprecatedFirstTimestamp",
    "lastTimestamp": "deprecatedLastTimestamp",
    "source": "deprecatedSource",
}
_BACK = {new: old for old, new in _RENAMED.items()}


def from_core(obj: Obj) -> Obj:
    out = {_RENAMED.get(k, k): v for k, v in obj.items()}
    if out.get("kind") == "Event":
        out["apiVersion"] = f"{GROUP}/v1"
    return out


def to_core(obj: Obj) -> Obj:
    out = {_BACK.get(k, k): v for k, v in obj.items()}
    out["apiVersion"], out["kind"] = "v1", "Event"
    if out.get("reportingComponent") and not out.get("source"):
        out["source"] = {"component": out["reportingComponent"]}
    return out


def core_field_selector(selector: str | None) -> str | None:
    if not selector:
        return selector
    return selector.replace("regarding.", "involvedObject.").replace(
        "reportingController", "reportingComponent"
    )
