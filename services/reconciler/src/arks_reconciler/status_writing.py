"""Writing the status fields the reconciler owns, and telling the world when they change.

Each kind's status has fields the reconciler owns (an application's phase, counts and
conditions) and may have fields someone else owns (an ArksQuota's `quotaStatus` and
`budgetStatus`, written by the accountant). `StatusWriter.write` changes only the owned
keys, through the store's status subresource with conflict retries, so it never clobbers
another writer; it skips the write when nothing owned changed.

When the phase or a condition's status or reason changes, a `ResourceStatusChanged`
event (id `<kind>/<ns>/<name>/<resourceVersion>`) goes to the ARKS_RESOURCE_EVENTS
stream: the history `arks describe` shows. Publishing is best effort: a failure is logged
and the reconcile carries on (the status itself is the source of truth).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any

from arks_common import events, resources, subjects
from arks_common.errors import ArksError
from arks_common.messaging import Bus
from arks_common.store import Obj
from arks_reconciler.platform import ResourceAccess

log = logging.getLogger(__name__)

APPLICATION_KEYS = frozenset(
    {"phase", "replicas", "readyReplicas", "updatedReplicas", "selector", "conditions",
     "observedGeneration"}
)  # fmt: skip
DISAGGREGATED_KEYS = frozenset(
    {"phase", "router", "prefill", "decode", "conditions", "observedGeneration"}
)
MODEL_KEYS = frozenset(
    {"phase", "path", "resolvedRevision", "sizeBytes", "conditions", "observedGeneration"}
)
ENDPOINT_KEYS = frozenset({"routes", "conditions", "observedGeneration"})
CONDITION_KEYS = frozenset({"conditions", "observedGeneration"})
"""ArksToken and ArksQuota: the accountant owns the quota's usage fields."""
PHASED_KINDS = frozenset({"ArksModel", "ArksApplication", "ArksDisaggregatedApplication"})

OWNED_KEYS: dict[str, frozenset[str]] = {
    "ArksApplication": APPLICATION_KEYS,
    "ArksDisaggregatedApplication": DISAGGREGATED_KEYS,
    "ArksModel": MODEL_KEYS,
    "ArksEndpoint": ENDPOINT_KEYS,
    "ArksToken": CONDITION_KEYS,
    "ArksQuota": CONDITION_KEYS,
}

_FAILURE_REASONS_OK = frozenset({"Running", "PartiallyReady", "Ready", "Published"})


def owned_part(status: Mapping[str, Any], owned: Collection[str]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k in owned}


def _signature(status: Mapping[str, Any]) -> tuple[object, ...]:
    conds = tuple(
        (c.get("type"), c.get("status"), c.get("reason"))
        for c in status.get("conditions") or []
        if isinstance(c, dict)
    )
    return (status.get("phase"), conds)


def _headline(status: Mapping[str, Any]) -> tuple[str, str, bool]:
    """(reason, message, warning) of the most telling condition: Ready, else the first."""
    conds = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    ready = next((c for c in conds if c.get("type") == "Ready"), None)
    pick = ready or (conds[0] if conds else {})
    bad = status.get("phase") == "Failed" or (
        pick.get("status") == "False"
        and pick.get("reason") not in _FAILURE_REASONS_OK
        and pick.get("reason") not in ("ModelLoading", "ReplicasNotReady", "ScaledToZero")
    )
    return str(pick.get("reason") or ""), str(pick.get("message") or ""), bad


EventHook = Callable[[Obj, str, str, str], None]
"""(object, "Normal" | "Warning", reason, message): a platform's own events."""
WrittenHook = Callable[[Obj], None]
"""The object as a status write stored it."""


class StatusWriter:
    def __init__(
        self,
        access: ResourceAccess,
        bus: Bus,
        *,
        on_change: EventHook | None = None,
        on_written: WrittenHook | None = None,
    ) -> None:
        self.access = access
        self.bus = bus
        self.on_change = on_change
        """Also told of every headline change (Kubernetes Events on that platform)."""
        self.on_written = on_written
        """Told of every object written (the reconciler's cache takes it before the
        watch brings it, so the next reconcile does not start from an older status)."""
        self.events_published = 0

    async def write(
        self, raw: Obj, new_status: Mapping[str, Any], *, owned: Collection[str] | None = None
    ) -> Obj | None:
        """Set the owned keys of `raw`'s status to `new_status`'s; None if nothing changed."""
        kind = str(raw["kind"])
        meta = raw["metadata"]
        keys = owned if owned is not None else OWNED_KEYS[kind]
        wanted = owned_part(new_status, keys)
        current = raw.get("status") or {}
        if owned_part(current, keys) == wanted:
            return None

        seen: list[dict[str, Any]] = []

        def mutate(status: Obj) -> Obj | None:
            # Called with the stored status (fresher than our cache), once per attempt.
            seen.append(owned_part(status, keys))
            if seen[-1] == wanted:
                return None
            out = {k: v for k, v in status.items() if k not in keys}
            out.update(wanted)
            return out

        namespace = meta.get("namespace") or "default"
        written = await self.access.update_status(kind, namespace, meta["name"], mutate)
        if written is None or not seen or seen[-1] == wanted:
            return None
        if self.on_written is not None:
            self.on_written(written)
        if _signature(seen[-1]) != _signature(wanted):
            await self._announce(written, wanted)
        return written

    async def _announce(self, obj: Obj, status: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        kind, namespace, name = str(obj["kind"]), meta.get("namespace") or "default", meta["name"]
        reason, message, warning = _headline(status)
        if self.on_change is not None:
            self.on_change(
                obj, "Warning" if warning else "Normal", reason or "StatusChanged", message
            )
        conds = [
            events.ConditionSnapshot(
                type=str(c.get("type")),
                status=str(c.get("status")),
                reason=str(c.get("reason") or ""),
                message=str(c.get("message") or ""),
            )
            for c in status.get("conditions") or []
            if isinstance(c, dict)
        ]
        event = events.ResourceStatusChanged(
            id=f"{kind}/{namespace}/{name}/{meta.get('resourceVersion')}",
            kind=kind,
            namespace=namespace,
            name=name,
            generation=int(meta.get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
            phase=str(status.get("phase") or ""),
            event_type="Warning" if warning else "Normal",
            reason=reason,
            message=message,
            conditions=conds,
        )
        try:
            await self.bus.publish(subjects.resource_status_subject(kind, namespace, name), event)
            self.events_published += 1
        except ArksError as exc:
            log.warning(
                "could not publish the status change of %s %s/%s: %s",
                kind,
                namespace,
                name,
                exc.message,
            )


def dump_status(status: resources.ResourceStatus) -> dict[str, Any]:
    """A status model as stored (JSON names, no nulls)."""
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)
