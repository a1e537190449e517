"""Names, labels and owner references of the objects the Kubernetes platform owns.

Every object the reconciler writes carries `app.kubernetes.io/managed-by: arks` (the
informers of owned kinds select on it), a controller ownerReference to the arks.ai
object it belongs to (garbage collection deletes it with its owner), and the upstream
labels (`arks.ai/application`, `arks.ai/model`, `arks.ai/work-load-role`,
`arks.ai/disaggregation-role`, spec §1.1) so objects created by upstream Arks and by us
look alike. `TEMPLATE_HASH` carries the plan's template hash on pod templates: a pod with
another hash runs an out-of-date template (`updatedReplicas`).
"""

from __future__ import annotations

from typing import Any, Final

Obj = dict[str, Any]

FIELD_MANAGER: Final = "arks-reconciler"
MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE: Final = "arks"
MANAGED_SELECTOR: Final = f"{MANAGED_BY}={MANAGED_BY_VALUE}"

APPLICATION_LABEL: Final = "arks.ai/application"
MODEL_LABEL: Final = "arks.ai/model"
WORKLOAD_ROLE_LABEL: Final = "arks.ai/work-load-role"
"""`leader` or `worker` (a worker pod is never labelled leader)."""
PD_ROLE_LABEL: Final = "arks.ai/disaggregation-role"
"""`router`, `prefill` or `decode` (disaggregated applications)."""
ROLE_LABEL: Final = "arks.ai/role"
"""The plan's role of a pod (`inference`, `prefill`, `decode`, `router`)."""
TEMPLATE_HASH: Final = "arks.ai/template-hash"
LEADER: Final = "leader"
WORKER: Final = "worker"

MODELS_VOLUME: Final = "models"
MODELS_MOUNT: Final = "/models"

ARKS_API_VERSION: Final = "arks.ai/v1"

MAX_NAME: Final = 253
"""Longest object name (DNS subdomain)."""
MAX_LABEL_VALUE: Final = 63
"""Longest label value, and longest name of objects named as DNS labels (Services)."""


def owner_reference(kind: str, name: str, uid: str) -> Obj:
    """A controller ownerReference to the arks.ai object `kind`/`name`."""
    return {
        "apiVersion": ARKS_API_VERSION,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def managed_labels(**labels: str) -> dict[str, str]:
    """`labels` plus the managed-by label."""
    return {MANAGED_BY: MANAGED_BY_VALUE, **labels}


def controller_of(obj: Obj) -> Obj | None:
    """The controller ownerReference of `obj`, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None
