"""Whether a pod fits a node, with the reasons the real scheduler's filters give.

Filters in upstream's order, the first failing one deciding a node's reasons:
NodeUnschedulable ("node(s) were unschedulable"), a node that is not Ready (its
`node.kubernetes.io/not-ready` taint), TaintToleration ("node(s) had untolerated taint
{key: value}", NoSchedule and NoExecute taints), NodeAffinity ("node(s) didn't match
Pod's node affinity/selector": nodeSelector and required nodeAffinity with In, NotIn,
Exists, DoesNotExist, Gt, Lt and matchFields on metadata.name) and NodeResourcesFit
("Insufficient <resource>" per short resource, "Too many pods"). `resolvable` tells
preemption's message apart: only resource shortages could be solved by evicting pods.
Scores are upstream's least-allocated (cpu and memory, with its non-zero defaults for
containers that request nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from arks_devcluster.kubelet.quantities import parse_quantity, pod_requests

Obj = dict[str, Any]
NOT_READY_TAINT = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
_DEFAULT_CPU = Fraction(1, 10)  # 100m, upstream's non-zero default for scoring
_DEFAULT_MEMORY = Fraction(200 * 2**20)


@dataclass(frozen=True)
class Misfit:
    reasons: tuple[str, ...]
    resolvable: bool
    """Preemption could help (resources), as opposed to UnschedulableAndUnresolvable."""


def tolerates(tolerations: list[Obj], taint: Obj) -> bool:
    for toleration in tolerations:
        effect = toleration.get("effect")
        if effect and effect != taint.get("effect"):
            continue
        operator = toleration.get("operator") or "Equal"
        key = toleration.get("key")
        if not key:
            if operator == "Exists":
                return True
            continue
        if key != taint.get("key"):
            continue
        if operator == "Exists" or (toleration.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def _expression(labels: dict[str, str], expression: Obj) -> bool:
    key, operator = expression.get("key", ""), expression.get("operator")
    values = [str(v) for v in expression.get("values") or []]
    present = key in labels
    if operator == "In":
        return present and labels[key] in values
    if operator == "NotIn":
        return not present or labels[key] not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(values) == 1:
        try:
            have, bound = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return have > bound if operator == "Gt" else have < bound
    return False


def _term(node: Obj, term: Obj) -> bool:
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    labels = node["metadata"].get("labels") or {}
    field_values = {"metadata.name": node["metadata"]["name"]}
    return all(_expression(labels, e) for e in expressions) and all(
        _expression(field_values, f) for f in fields
    )


def matches_affinity(pod: Obj, node: Obj) -> bool:
    spec = pod.get("spec") or {}
    labels = node["metadata"].get("labels") or {}
    selector = spec.get("nodeSelector") or {}
    if any(labels.get(k) != str(v) for k, v in selector.items()):
        return False
    node_affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        return True
    return any(_term(node, term) for term in required.get("nodeSelectorTerms") or [])


def is_ready(node: Obj) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _taint_text(taint: Obj) -> str:
    return f"{{{taint.get('key', '')}: {taint.get('value', '')}}}"


def misfit(pod: Obj, node: Obj, used: dict[str, Fraction], pods_on_node: int) -> Misfit | None:
    """Why `pod` does not fit `node` (None: it fits), given what the node's other pods
    use (`used`) and how many there are."""
    spec = pod.get("spec") or {}
    tolerations = spec.get("tolerations") or []
    if (node.get("spec") or {}).get("unschedulable") and not tolerates(
        tolerations, {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
    ):
        return Misfit(("node(s) were unschedulable",), False)
    taints = list((node.get("spec") or {}).get("taints") or [])
    if not is_ready(node):
        taints.insert(0, NOT_READY_TAINT)
    for taint in taints:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            return Misfit((f"node(s) had untolerated taint {_taint_text(taint)}",), False)
    if not matches_affinity(pod, node):
        return Misfit(("node(s) didn't match Pod's node affinity/selector",), False)
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    reasons = []
    if pods_on_node + 1 > int(parse_quantity(allocatable.get("pods", 110))):
        reasons.append("Too many pods")
    for name, amount in sorted(pod_requests(pod).items()):
        if amount <= 0:
            continue
        have = parse_quantity(allocatable.get(name, 0))
        if used.get(name, Fraction(0)) + amount > have:
            reasons.append(f"Insufficient {name}")
    return Misfit(tuple(reasons), True) if reasons else None


def score_requests(pod: Obj) -> dict[str, Fraction]:
    requests = pod_requests(pod)
    requests.setdefault("cpu", _DEFAULT_CPU)
    requests.setdefault("memory", _DEFAULT_MEMORY)
    return requests


def least_allocated(node: Obj, used: dict[str, Fraction], pod: Obj) -> float:
    """0-100: how free the node's cpu and memory stay with the pod on it."""
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    wanted = score_requests(pod)
    scores = []
    for name in ("cpu", "memory"):
        have = parse_quantity(allocatable.get(name, 0))
        if have <= 0:
            scores.append(0.0)
            continue
        after = used.get(name, Fraction(0)) + wanted[name]
        scores.append(float(max(Fraction(0), have - after) * 100 / have))
    return sum(scores) / len(scores)
