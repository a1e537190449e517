"""Small helpers the workload controllers share: label selectors, int-or-percent values,
template hashes, condition lists and timestamps.

Nothing here writes; every function is pure. A malformed value (a percentage that is not
one, a selector operator upstream does not know) raises `ValueError`, which the reconcile
loop logs and retries with backoff, as upstream requeues an object it cannot sync.
"""

from __future__ import annotations

import copy
import json
import math
import struct
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from arks_devcluster.store import now

Obj = dict[str, Any]

SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""k8s.io/apimachinery/pkg/util/rand: the characters of generated names (no vowels, no
look-alike digits)."""


# ----------------------------------------------------------------------------- selectors
def selector_matches(selector: Obj | None, labels: Mapping[str, str] | None) -> bool:
    """A metav1.LabelSelector against labels. An empty selector matches everything; a
    missing one (None) matches nothing, as `LabelSelectorAsSelector` does."""
    if selector is None:
        return False
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], set(expr.get("values") or [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"{op!r} is not a valid label selector operator")
    return True


def selector_string(selector: Obj | None) -> str:
    """A LabelSelector as the string form (`a=b,c in (d,e)`), e.g. for status selectors."""
    parts = [f"{k}={v}" for k, v in sorted((selector or {}).get("matchLabels", {}).items())]
    for expr in (selector or {}).get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], sorted(expr.get("values") or [])
        if op in ("In", "NotIn"):
            parts.append(f"{key} {op.lower()} ({','.join(values)})")
        else:
            parts.append(key if op == "Exists" else f"!{key}")
    return ",".join(parts)


# ----------------------------------------------------------------------------- numbers
def scaled_value(value: Any, total: int, *, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent: an int as is, "25%" of `total` rounded up
    (surge) or down (unavailable)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.endswith("%"):
        try:
            percent = int(value[:-1])
        except ValueError:
            raise ValueError(f"invalid value for IntOrString: invalid value {value!r}") from None
        exact = percent * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise ValueError("invalid value for IntOrString: invalid type: string is not a percentage")


def int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


# ----------------------------------------------------------------------------- hashes
def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode(text: str) -> str:
    """rand.SafeEncodeString: each byte mapped into the safe alphabet."""
    return "".join(SAFE_ALPHABET[b % len(SAFE_ALPHABET)] for b in text.encode())


def template_hash(template: Any, collision_count: int | None = None) -> str:
    """controller.ComputeHash: FNV-32a of the template (here its canonical JSON rather
    than Go's struct dump, so the values differ from a real cluster's but have the same
    shape: up to 10 safe characters), salted with the collision count."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count is not None:
        data += struct.pack("<I", collision_count & 0xFFFFFFFF)
    return safe_encode(str(fnv32a(data)))


def without_label(template: Obj, key: str) -> Obj:
    """A pod template without one label (to compare templates ignoring the hash)."""
    out = copy.deepcopy(template)
    labels = out.get("metadata", {}).get("labels")
    if labels and key in labels:
        del labels[key]
    return out


# ----------------------------------------------------------------------------- time
def parse_time(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def seconds_since(stamp: str | None) -> float:
    """Seconds from an RFC 3339 timestamp to now (0 for none)."""
    parsed = parse_time(stamp)
    return (datetime.now(UTC) - parsed).total_seconds() if parsed else 0.0


# ----------------------------------------------------------------------------- conditions
def get_condition(status: Obj, kind: str) -> Obj | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return None


def set_condition(
    status: Obj, kind: str, value: str, reason: str, message: str, *, update_time: bool = True
) -> bool:
    """Set a condition as upstream's helpers do: the same status and reason keep their
    timestamps (the message is refreshed); a change moves it to the end, keeping
    lastTransitionTime when only the reason changed. `update_time` adds lastUpdateTime
    (Deployments). True if anything changed."""
    conditions: list[Obj] = [dict(c) for c in status.get("conditions") or []]
    current = next((c for c in conditions if c.get("type") == kind), None)
    if current is not None and current.get("status") == value and current.get("reason") == reason:
        if current.get("message") == message:
            return False
        current["message"] = message
        status["conditions"] = conditions
        return True
    stamp = now()
    condition: Obj = {"type": kind, "status": value}
    if update_time:
        condition["lastUpdateTime"] = stamp
    kept = current is not None and current.get("status") == value
    condition["lastTransitionTime"] = (
        current.get("lastTransitionTime", stamp) if current and kept else stamp
    )
    condition.update(reason=reason, message=message)
    status["conditions"] = [c for c in conditions if c.get("type") != kind] + [condition]
    return True


def remove_condition(status: Obj, kind: str) -> None:
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != kind]


def omit_zero(status: Obj, *keys: str) -> Obj:
    """Drop `omitempty` counters that are 0, as the Go types serialise them."""
    return {k: v for k, v in status.items() if not (k in keys and v == 0)}


def merged_into(current: Obj, wanted: Obj) -> Obj:
    """`current` with `wanted`'s labels and annotations added and its spec fields set,
    as a controller's server-side apply of the fields it owns would leave it."""
    out = copy.deepcopy(current)
    for field in ("labels", "annotations"):
        if wanted["metadata"].get(field):
            out["metadata"][field] = {
                **(current["metadata"].get(field) or {}),
                **wanted["metadata"][field],
            }
    out.setdefault("spec", {}).update(copy.deepcopy(wanted.get("spec") or {}))
    return out
