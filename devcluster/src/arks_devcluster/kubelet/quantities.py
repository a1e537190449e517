"""Kubernetes resource quantities (`500m`, `64`, `512Gi`, `1e3`) and a pod's requests.

A pod's requests are computed as the scheduler does: per resource, the sum over its
containers (a limit stands in for a missing request, as the API server's defaulting
would have copied it) or the largest init container's, whichever is more. A quantity
that does not parse raises ValueError.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

Obj = dict[str, Any]
_SUFFIXES = {
    "": Fraction(1),
    "m": Fraction(1, 1000),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))([eE][+-]?\d+|[a-zA-Z]*)$")


def parse_quantity(value: Any) -> Fraction:
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int | float):
        return Fraction(value)
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"not a quantity: {value!r}")
    number, suffix = match.groups()
    if suffix[:1] in ("e", "E") and suffix[1:].lstrip("+-").isdigit():
        return Fraction(number) * Fraction(10) ** int(suffix[1:])
    if suffix not in _SUFFIXES:
        raise ValueError(f"not a quantity: {value!r} (unknown suffix {suffix!r})")
    return Fraction(number) * _SUFFIXES[suffix]


def _container_requests(container: Obj) -> dict[str, Fraction]:
    resources = container.get("resources") or {}
    out: dict[str, Fraction] = {}
    for name, value in (resources.get("limits") or {}).items():
        out[name] = parse_quantity(value)
    for name, value in (resources.get("requests") or {}).items():
        out[name] = parse_quantity(value)
    return out


def pod_requests(pod: Obj) -> dict[str, Fraction]:
    """What the pod asks of a node, per resource name."""
    spec = pod.get("spec") or {}
    total: dict[str, Fraction] = {}
    for container in spec.get("containers") or []:
        for name, amount in _container_requests(container).items():
            total[name] = total.get(name, Fraction(0)) + amount
    for container in spec.get("initContainers") or []:
        for name, amount in _container_requests(container).items():
            total[name] = max(total.get(name, Fraction(0)), amount)
    for name, amount in (spec.get("overhead") or {}).items():
        total[name] = total.get(name, Fraction(0)) + parse_quantity(amount)
    return total


def qos_class(pod: Obj) -> str:
    """Guaranteed, Burstable or BestEffort, as the API server computes `status.qosClass`."""
    spec = pod.get("spec") or {}
    containers = [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
    compute = ("cpu", "memory")
    any_set = False
    guaranteed = True
    for container in containers:
        resources = container.get("resources") or {}
        limits = {k: parse_quantity(v) for k, v in (resources.get("limits") or {}).items()}
        requests = {k: parse_quantity(v) for k, v in (resources.get("requests") or {}).items()}
        if any(k in limits or k in requests for k in compute):
            any_set = True
        for name in compute:
            if name not in limits or requests.get(name, limits[name]) != limits[name]:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
